"""Storage: S3 URIs, the S3 client and its operations, atomic local writes, download caches."""
