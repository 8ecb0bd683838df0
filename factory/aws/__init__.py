"""The AWS half of the factory: credentials (session), uploads (ebs_direct, vm_import), promotion.

`local` runs an embedded moto server: a stand-in for AWS so the demo works without an account.
"""
