"""The public edge: Flask REST API and Flask-SocketIO live push."""
