"""The production server: gunicorn with threaded workers, and the lock on its data dir."""
