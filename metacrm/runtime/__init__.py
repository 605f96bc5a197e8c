"""The runtime: metadata compiled into tables, validators and record services."""
