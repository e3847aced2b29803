"""The operators' live dashboard: one static page at ``/`` and compact read-only JSON views under
``/v1/dashboard`` (viewer key). Leaflet is vendored under ``static/vendor`` so the page works offline;
``python -m oracle.dashboard.build`` refreshes the copy from ``node_modules``."""
