"""`maas add-model`: an artifact on disk becomes a validated, versioned model in a repository,
and, with a running server, a live one (load, unload, rollback without a restart)."""
