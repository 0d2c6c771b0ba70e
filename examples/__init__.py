"""The course's example plugins and hosts (importable, so notebooks can use them)."""
