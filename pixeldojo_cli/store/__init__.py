"""What lives on disk: settings, the job ledger, output files and sidecars, downloads."""
