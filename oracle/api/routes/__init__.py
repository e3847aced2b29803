"""One router per resource. Each is listed once in ``oracle/api/app.py`` (``ROUTERS``)."""
