"""AWS: credentials (session), uploads (ebs_direct, vm_import), promotion (promote), behind the target
interface (adapter.AwsTarget).

`local` runs an embedded moto server (motoserver): a stand-in for AWS so the demo works without an account.
"""
