"""Files: uploads streamed to storage (a local directory or S3), metadata as records.

- :mod:`apicrud.files.storage`: the Storage interface, LocalStorage, S3Storage
- :mod:`apicrud.files.upload`: a multipart/form-data body read part by part
- :mod:`apicrud.files.sniff`: content types from the bytes, safe names and types
- :mod:`apicrud.files.controller`: FileController, BasicCRUD for a resource of files
- :mod:`apicrud.files.models`: FileMixin, the columns of a file record

A resource's schema declares a file field with ``format: binary`` (or
``contentMediaType``); its operations take it as a ``multipart/form-data`` part.
"""
