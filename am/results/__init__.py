"""
Where results live on the controller (docs/results.md): a store of finished
files behind one interface (L{interfaces.IResultStore}: a local directory or
an S3-compatible object store) and a spool of uploads in progress.
"""
