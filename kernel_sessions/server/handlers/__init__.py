"""REST endpoints under ``{base_url}api/kernel-sessions/`` (contract: ``api.yaml``), one
``APIHandler`` per endpoint; ``routes.py`` holds the only route table."""
