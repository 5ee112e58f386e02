"""End-to-end tests: the real ``botrun`` CLI in a subprocess against the Discord emulator."""
