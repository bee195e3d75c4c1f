"""Input and output: text decoding, dates, the export formats and their readers, loading, writing tables."""
