"""Writing outputs: atomic files, the resumable results.jsonl state, report.html and plots."""
