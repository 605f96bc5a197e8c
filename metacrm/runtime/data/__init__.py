"""Data in and out: file imports, duplicate rules, merges and exports, all through the write path."""
