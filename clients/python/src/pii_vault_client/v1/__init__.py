"""Generated from proto/vault/v1 by scripts/gen_proto.py. Do not edit."""
