"""Sources: readers that turn annotations on disk into schema-v1 rows, reporting every row they cannot use."""
