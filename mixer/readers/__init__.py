"""Raw input files to raw items: one reader per format, the dispatch on the file's name and content, and
the byte ranges (parts) a large file is read in."""
