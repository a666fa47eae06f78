#!/usr/bin/env python3
"""Checks runbook's credential chain against Alibaba's own alibabacloud-credentials.

Starts `runbook sim` (STS, the ECS metadata service and a credentials URI on
one loopback port) with identities, then for each source of the default
chain (the libraries' INI credentials file included) sets up the same
environment and config files for both:

- Alibaba's `DefaultCredentialsProvider` (Python), in a child process (the
  library reads HOME and the environment when it is imported), with its
  fixed STS host and metadata host pointed at the simulator (the library
  takes them only in code: they are set on its provider objects);
- `runbook run` of a one-call playbook, with RUNBOOK_STS_ENDPOINT and
  RUNBOOK_ECS_METADATA_ENDPOINT pointed at the simulator;

and compares the source each one picked and the STS / metadata requests each
one sent (from the simulator's call log: action or path, the parameters that
name the role, provider and session). runbook also asks STS
`GetCallerIdentity` who it is (the library does not): that call is listed
apart.

Setup (once):
    python3 -m venv /tmp/alicreds
    /tmp/alicreds/bin/pip install alibabacloud-credentials==1.0.12
Run:
    cargo build && /tmp/alicreds/bin/python scripts/python_credentials_check.py [--runbook target/debug/runbook]

Exit status 0 when every source matches.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid

OWN_ID, OWN_SECRET = "SDK" + uuid.uuid4().hex[:12].upper(), uuid.uuid4().hex
OPS_ID, OPS_SECRET = "LTAIopsKey0000001", "ops-secret"
MAINT = "acs:ram::2222222222222222:role/maint"
DW = "acs:ram::3333333333333333:role/dataworks-ops"
OIDC = "acs:ram::1111111111111111:oidc-provider/ack-rrsa"

FIXTURES = f"""
identities:
  users:
    - {{ access_key_id: {OPS_ID}, access_key_secret: {OPS_SECRET}, arn: 'acs:ram::1111111111111111:user/ops' }}
  roles:
    - {{ arn: '{MAINT}', trusted: ['acs:ram::1111111111111111:user/ops', '{OIDC}'] }}
    - {{ arn: '{DW}', trusted: ['{MAINT}'] }}
    - {{ arn: 'acs:ram::2222222222222222:role/ecs-maint', trusted: ['*'] }}
  ecs_role: ecs-maint
  imds_token_required: true
  credentials_uri_role: 'acs:ram::2222222222222222:role/ecs-maint'
"""

PLAYBOOK = """name: who
defaults: { region: cn-hangzhou }
steps:
  - id: read
    call: dts.DescribeDtsJobDetail
    with: { DtsJobId: j1 }
"""

# How each library names the source it picked (Python provider name, runbook
# source text start).
SOURCES = {
    "env": ("default/env", "environment variables"),
    "oidc": ("default/oidc_role_arn", "OIDC role"),
    "profile-ak": ("default/cli_profile/static_ak", "profile `ak`"),
    "profile-ramrolearn": ("default/cli_profile/ram_role_arn", f"role {MAINT} assumed with profile `role`"),
    "profile-chainable": ("default/cli_profile/ram_role_arn", f"role {DW} assumed with role {MAINT}"),
    "profile-oidc": ("default/cli_profile/oidc_role_arn", "OIDC role"),
    "file-ak": ("default/profile/static_ak", "section [default] of"),
    "file-ramrolearn": ("default/profile/ram_role_arn", f"role {MAINT} assumed with section [role] of"),
    "ecs": ("default/ecs_ram_role", "ECS instance RAM role `ecs-maint`"),
    "uri": ("default/credential_uri", "credentials URI"),
}


def child(sim_url):
    """In a child process: what the Python library resolves."""
    from alibabacloud_credentials.provider import default as default_mod
    from alibabacloud_credentials.provider import ecs_ram_role, oidc, ram_role_arn

    def point(cls, setter):
        init = cls.__init__

        def patched(self, *a, **kw):
            init(self, *a, **kw)
            setter(self)

        cls.__init__ = patched

    point(oidc.OIDCRoleArnCredentialsProvider, lambda p: setattr(p, "_sts_endpoint", sim_url))
    point(ram_role_arn.RamRoleArnCredentialsProvider, lambda p: setattr(p, "_sts_endpoint", sim_url))
    point(
        ecs_ram_role.EcsRamRoleCredentialsProvider,
        lambda p: setattr(p, "_EcsRamRoleCredentialsProvider__metadata_service_host", sim_url),
    )
    try:
        creds = default_mod.DefaultCredentialsProvider().get_credentials()
        print(json.dumps({"source": creds.get_provider_name(), "key": creds.get_access_key_id()[:4]}))
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        print(json.dumps({"error": str(e)[:300]}))


def log_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def credential_requests(records):
    """The STS and metadata requests, normalized: (action or path, key params)."""
    out = []
    for r in records:
        if r.get("product") == "host":
            out.append((r["action"], r["params"].get("Path", "")))
        elif r.get("version") == "2015-04-01":
            p = r.get("params", {})
            keys = ("RoleArn", "OIDCProviderArn", "RoleSessionName", "DurationSeconds")
            out.append((r["action"], " ".join(f"{k}={p[k]}" for k in keys if k in p)))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    parser.add_argument("--runbook", default=os.path.join(target, "debug", "runbook"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)

    work = tempfile.mkdtemp(prefix="credcheck-")
    fixtures = os.path.join(work, "fixtures.yaml")
    with open(fixtures, "w") as f:
        f.write(FIXTURES)
    playbook = os.path.join(work, "who.yaml")
    with open(playbook, "w") as f:
        f.write(PLAYBOOK)
    token = os.path.join(work, "oidc-token")
    with open(token, "w") as f:
        f.write("eyJhbGciOi.sim.token")
    log = os.path.join(work, "calls.jsonl")
    sim_env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=OWN_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=OWN_SECRET)
    sim = subprocess.Popen(
        [args.runbook, "sim", "--listen", "127.0.0.1:0", "--auto-create", "--delay", "0s",
         "--fixtures", fixtures, "--log", log],
        stdout=subprocess.PIPE, env=sim_env, text=True,
    )
    failures = 0
    try:
        url = sim.stdout.readline().strip()
        homes = {}
        for name in SOURCES:
            home = os.path.join(work, "home-" + name)
            os.makedirs(os.path.join(home, ".aliyun"))
            homes[name] = home
        config = {
            "current": "ak",
            "profiles": [
                {"name": "ak", "mode": "AK", "access_key_id": OPS_ID, "access_key_secret": OPS_SECRET},
                {"name": "role", "mode": "RamRoleArn", "access_key_id": OPS_ID, "access_key_secret": OPS_SECRET,
                 "ram_role_arn": MAINT, "ram_session_name": "check"},
                {"name": "chain", "mode": "ChainableRamRoleArn", "source_profile": "role",
                 "ram_role_arn": DW, "ram_session_name": "check"},
                {"name": "oidc", "mode": "OIDC", "ram_role_arn": MAINT, "oidc_provider_arn": OIDC,
                 "oidc_token_file": token, "role_session_name": "check"},
            ],
        }
        for name in ("profile-ak", "profile-ramrolearn", "profile-chainable", "profile-oidc"):
            with open(os.path.join(homes[name], ".aliyun", "config.json"), "w") as f:
                json.dump(config, f)
        # The libraries' own credentials file (credentials-python's name;
        # runbook reads it when ~/.alibabacloud/credentials is absent).
        ini = (f"[default]\ntype = access_key\naccess_key_id = {OPS_ID}\naccess_key_secret = {OPS_SECRET}\n\n"
               f"[role]\ntype = ram_role_arn\naccess_key_id = {OPS_ID}\naccess_key_secret = {OPS_SECRET}\n"
               f"role_arn = {MAINT}\nrole_session_name = check\n")
        for name in ("file-ak", "file-ramrolearn"):
            os.makedirs(os.path.join(homes[name], ".alibabacloud"))
            with open(os.path.join(homes[name], ".alibabacloud", "credentials.ini"), "w") as f:
                f.write(ini)
        base = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
        base["ALIBABA_CLOUD_ROLE_SESSION_NAME"] = "check"
        scenarios = {
            "env": {"ALIBABA_CLOUD_ACCESS_KEY_ID": OWN_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": OWN_SECRET},
            "oidc": {"ALIBABA_CLOUD_ROLE_ARN": MAINT, "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": OIDC,
                     "ALIBABA_CLOUD_OIDC_TOKEN_FILE": token},
            "profile-ak": {},
            "profile-ramrolearn": {"ALIBABA_CLOUD_PROFILE": "role"},
            "profile-chainable": {"ALIBABA_CLOUD_PROFILE": "chain"},
            "profile-oidc": {"ALIBABA_CLOUD_PROFILE": "oidc"},
            "file-ak": {},
            "file-ramrolearn": {"ALIBABA_CLOUD_PROFILE": "role"},
            "ecs": {},
            "uri": {"ALIBABA_CLOUD_CREDENTIALS_URI": url + "/credentials",
                    "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"},
        }
        for name, extra in scenarios.items():
            env = dict(base, HOME=homes[name], **extra)
            if name not in ("ecs",):
                # Neither library may find the (simulated) instance role unless asked to.
                env.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            before = len(log_lines(log))
            py = subprocess.run([sys.executable, __file__, "--child", url], env=env,
                                capture_output=True, text=True, timeout=60)
            mid = len(log_lines(log))
            try:
                got = json.loads(py.stdout.strip().splitlines()[-1])
            except (IndexError, ValueError):
                got = {"error": py.stderr.strip()[-300:]}
            rb_env = dict(env, RUNBOOK_STS_ENDPOINT=url, RUNBOOK_ECS_METADATA_ENDPOINT=url,
                          RUST_LOG="runbook::cloud::provider=debug")
            rb = subprocess.run(
                [args.runbook, "run", playbook, "--yes", "--endpoint", "dts=" + url,
                 "--state-dir", os.path.join(work, "state-" + name)],
                env=rb_env, capture_output=True, text=True, timeout=60,
            )
            records = log_lines(log)
            py_reqs = credential_requests(records[before:mid])
            rb_all = credential_requests(records[mid:])
            rb_reqs = [r for r in rb_all if r[0] != "GetCallerIdentity"]
            # The outermost source is fetched last (a role's base first).
            fetched = [line.split("source=", 1)[1].split(" expiration")[0]
                       for line in rb.stderr.splitlines() if "credentials fetched" in line]
            rb_source = fetched[-1] if fetched else "?"
            want_py, want_rb = SOURCES[name]
            ok_py = str(got.get("source", "")).startswith(want_py)
            ok_rb = rb.returncode == 0 and rb_source.startswith(want_rb)
            ok_reqs = sorted(set(py_reqs)) == sorted(set(rb_reqs))
            status = "ok  " if ok_py and ok_rb and ok_reqs else "FAIL"
            failures += status == "FAIL"
            print(f"{status} {name}: python {got.get('source', got.get('error'))} | runbook {rb_source}"
                  f"{'' if rb.returncode == 0 else ' (exit %d: %s)' % (rb.returncode, rb.stderr.strip()[-200:])}")
            print(f"       python  sent {py_reqs}")
            print(f"       runbook sent {rb_reqs} (+{len(rb_all) - len(rb_reqs)} GetCallerIdentity)")
    finally:
        sim.terminate()
        sim.wait()
    print("all sources match" if failures == 0 else f"{failures} source(s) differ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main() or 0)
