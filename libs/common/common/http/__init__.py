"""HTTP conventions shared by every service (DESIGN §4)."""
