"""Human-facing reports of run directories: plots, HTML and Markdown pages."""
