"""Datasette plugin: loads liblitestream ($LITESTREAM_EXTENSION) when Datasette starts, before it
opens any database. Datasette's internal database is a shared-cache in-memory database, and
SQLite shares such a cache only between connections of the same VFS: loading the extension
only through --load-extension (after that database's first connection) would make the
connections opened later a different VFS, and the internal database would look empty.
"""
import os

from datasette.utils.sqlite import sqlite3

_boot = sqlite3.connect(":memory:")
_boot.enable_load_extension(True)
_boot.load_extension(os.environ["LITESTREAM_EXTENSION"])
_boot.close()
