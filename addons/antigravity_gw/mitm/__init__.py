"""mitmproxy glue: the only package that imports mitmproxy or reads ``ctx.options``."""
