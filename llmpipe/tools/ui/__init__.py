"""The local web page, `llmpipe-tools ui`: runs, sweeps, run diffs and a recipe composer (docs/ui.md)."""
