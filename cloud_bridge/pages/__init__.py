"""What the gateway's pages and the hub's console share.

Rendering and CSRF (web), sign-in (auth), French and English text (i18n), SVG charts
(charts) and the HTTP server (http). `edge` may import this package; it imports no `edge`.
"""
