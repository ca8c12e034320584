"""The web console's page: index.html, console.css and console.js, served at /ui (api/console.py)."""
