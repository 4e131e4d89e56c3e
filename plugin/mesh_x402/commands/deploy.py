"""`mesh-x402 deploy`: put a mesh's contracts on a chain and write deployment.json.

    mesh-x402 deploy --rpc URL (--key-file F | --key-env VAR)
        [--with-test-token | --token ADDR] [--with-identity-registry | --identity-registry ADDR]
        [--force] --out deployment.json

On a local chain everything is deployed; on a public one the token (USDC)
and the ERC-8004 registry are given by address and only MeshSettlement is
deployed. The output file is checked before any transaction, so a run that
cannot write its result spends nothing; the key is never printed or logged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mesh_x402.chain.client import ChainClient
from mesh_x402.chain.deployment import DeploymentRefused, deploy, save_deployment
from mesh_x402.commands._chain import account_from_args, add_key_args, quiet_logs

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpc", required=True, metavar="URL", help="JSON-RPC URL of the chain")
    add_key_args(parser, "deployer (pays gas)")
    parser.add_argument(
        "--with-test-token",
        action="store_true",
        help="deploy TestUSDC (public mint: local chains only unless --force)",
    )
    parser.add_argument("--token", metavar="ADDR", help="use this EIP-3009 token (e.g. USDC)")
    parser.add_argument(
        "--with-identity-registry", action="store_true", help="deploy an ERC-8004 registry"
    )
    parser.add_argument(
        "--identity-registry", metavar="ADDR", help="use this ERC-8004 IdentityRegistry"
    )
    parser.add_argument(
        "--force", action="store_true", help="deploy the test token on a non-local chain id"
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="where to write deployment.json (must not exist)"
    )


def run(args: argparse.Namespace) -> int:
    quiet_logs()
    out: Path = args.out
    if out.exists():
        raise DeploymentRefused(f"{out} already exists; remove it or choose another --out")
    if not out.parent.is_dir():
        raise DeploymentRefused(f"{out.parent} is not a folder")
    account = account_from_args(args.key_file, args.key_env)
    client = ChainClient.connect(args.rpc)
    deployment = deploy(
        client,
        account,
        with_test_token=args.with_test_token,
        with_identity_registry=args.with_identity_registry,
        token=args.token,
        identity_registry=args.identity_registry,
        force=args.force,
    )
    save_deployment(out, deployment)
    print(f"chain id          {deployment.chain_id}")
    print(f"token             {deployment.token}")
    print(f"identity registry {deployment.identity_registry}")
    print(f"settlement        {deployment.settlement} (block {deployment.deployed_at})")
    print(f"wrote {out}")
    return 0
