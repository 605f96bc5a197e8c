"""Layouts and list views rendered as JSON Schema and UI schema documents."""
