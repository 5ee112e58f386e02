"""botrun's gateway library: a Python port of tiny-discord's InternalSharder on anyio."""
