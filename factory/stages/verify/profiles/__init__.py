"""Data sources for the target boot profiles of verify (issue 15): what each platform hands a booting guest.

- `imds`: EC2's instance metadata service (IMDSv2), an HTTP server on 127.0.0.1 the guest reaches through
  QEMU's user-network `guestfwd` (with `relay` as the per-connection command).
- `configdrive`: OpenStack Nova's config drive (ISO9660 `config-2`).
- `ovfenv`: VMware's OVF environment on an ISO (vApp properties over the iso transport).
- `smbios`: the QEMU `-smbios` arguments that make cloud-init's detection see EC2 / Nova / VMware.
"""
