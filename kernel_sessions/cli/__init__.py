"""``jupyter kernel-sessions …``: the command line (``app.py``) and how it shows things to
people (``render.py``). A REST client only: it never imports the server or the core's manager."""
