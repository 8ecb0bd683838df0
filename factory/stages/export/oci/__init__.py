"""Container base images from the sealed disk: its root filesystem, read offline, as an OCI image.

rootfs.extract(image, dest)   the sealed disk's root filesystem as a folder (owners, modes, no mounts)
layer.write(tree, ...)        one reproducible layer tar (+gzip) from that folder
image.write_layout(...)       OCI image layout (index.json, manifest, config) + docker-archive (skopeo)
build.export_oci(...)         the export format `oci`: all of the above, the container profile checked
"""
