"""Reference training: one readable loop (``loop.py``); methods are loss functions (``methods.py``)."""
