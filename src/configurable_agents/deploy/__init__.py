"""Serving a workflow in Docker: the files (:mod:`.artifacts`) and the engine (:mod:`.docker`)."""
