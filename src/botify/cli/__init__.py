"""The `botify` command line."""
