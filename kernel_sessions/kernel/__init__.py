"""Code that runs inside a kernel: sent in as source and kept under a private sys.modules key."""
