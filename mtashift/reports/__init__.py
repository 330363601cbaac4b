"""Self-contained HTML reports rendered from the catalog (jinja2 templates, inline SVG charts)."""
