"""The jupyter_server side: the extension, the kernel manager and kernelspec manager that
make sessions usable from notebooks, the rows kept in jupyter_server's session table, the
REST handlers (one route table, ``handlers/routes.py``), metrics and websocket tuning.
"""
