"""Test support shared by every service's tests: servers, fresh names, a severable TCP proxy."""
