#!/usr/bin/env python3
"""Checks the simulator against Alibaba's current-generation (Tea) Python SDKs.

These SDKs sign with signature V3 (ACS3-HMAC-SHA256, headers and an
Authorization header) by default. Starts `runbook sim` on a free loopback
port, sends every action the simulator serves through the generated clients
of alibabacloud_dts20200101 and alibabacloud_dataworks_public20200518 (on
alibabacloud-tea-openapi, endpoint pointed at the simulator over http),
checks each answer, checks that the simulator logged each call as V3, then
checks that a wrong secret is refused with SignatureDoesNotMatch. With
`--signature v2` the same clients sign with the older RPC signature (V1 in
runbook's terms) instead.

Setup (once):
    python3 -m venv /tmp/teasdk
    /tmp/teasdk/bin/pip install alibabacloud_dts20200101==5.11.7 \
        alibabacloud_dataworks_public20200518==10.1.1 alibabacloud-tea-openapi==0.4.6
Run:
    cargo build && /tmp/teasdk/bin/python scripts/python_tea_sdk_check.py [--runbook target/debug/runbook]

Exit status 0 when every check passes.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from importlib.metadata import version
from urllib.parse import urlparse

from alibabacloud_dataworks_public20200518 import models as dw
from alibabacloud_dataworks_public20200518.client import Client as DataWorks
from alibabacloud_dts20200101 import models as dts
from alibabacloud_dts20200101.client import Client as Dts
from alibabacloud_tea_openapi import models as openapi
from alibabacloud_tea_util import models as util
from Tea.exceptions import TeaException


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    parser.add_argument("--runbook", default=os.path.join(target, "debug", "runbook"))
    parser.add_argument("--signature", choices=["v3", "v2"], default="v3",
                        help="the SDK's signature_algorithm (v3: its default; v2: the older RPC signature)")
    args = parser.parse_args()
    for package in ["alibabacloud-tea-openapi", "alibabacloud-dts20200101",
                    "alibabacloud-dataworks-public20200518", "darabonba-core"]:
        try:
            print(f"{package} {version(package)}", flush=True)
        except Exception:  # noqa: BLE001 - a missing distribution name is not a failure
            pass

    key_id, secret = "SDK" + uuid.uuid4().hex[:12].upper(), uuid.uuid4().hex
    env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=key_id, ALIBABA_CLOUD_ACCESS_KEY_SECRET=secret)
    log = tempfile.NamedTemporaryFile(prefix="sim-calls-", suffix=".jsonl", delete=False)
    log.close()
    sim = subprocess.Popen(
        [args.runbook, "sim", "--listen", "127.0.0.1:0", "--auto-create", "--delay", "0s",
         "--log", log.name],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    failures = 0
    try:
        url = urlparse(sim.stdout.readline().strip())
        print(f"simulator at {url.geturl()}, signature {args.signature}", flush=True)

        def config(secret_to_use, region="cn-hangzhou"):
            c = openapi.Config(access_key_id=key_id, access_key_secret=secret_to_use,
                               endpoint=url.netloc, protocol="http", region_id=region)
            if args.signature == "v2":
                c.signature_algorithm = "v2"
            return c

        dataworks = DataWorks(config(secret, "cn-shanghai"))
        dts_client = Dts(config(secret))
        runtime = util.RuntimeOptions(autoretry=False)

        def check(name, call, expect):
            nonlocal failures
            try:
                body = call().body.to_map()
            except Exception as e:  # noqa: BLE001 - report any SDK failure as a failed check
                failures += 1
                print(f"FAIL {name}: {e}")
                return
            problems = [f"{path}={got!r}, want {want!r}" for path, want in expect.items()
                        if (got := select(body, path)) != want]
            if problems or "RequestId" not in body:
                failures += 1
                print(f"FAIL {name}: {'; '.join(problems) or 'no RequestId'}: {body}")
            else:
                print(f"ok   {name}: " + ", ".join(f"{p}={select(body, p)!r}" for p in expect))

        def node(cls, file_id=100, task_type="DI_REALTIME"):
            return cls(project_id=10000, file_id=file_id, task_type=task_type)

        def job(cls, direction=None):
            r = cls(dts_job_id="l3m1213ye7l", region_id="cn-hangzhou")
            if direction:
                r.synchronization_direction = direction
            return r

        check("GetDISyncInstanceInfo",
              lambda: dataworks.get_disync_instance_info_with_options(node(dw.GetDISyncInstanceInfoRequest), runtime),
              {"Success": True, "Data.Status": "RUN"})
        check("StopDISyncInstance",
              lambda: dataworks.stop_disync_instance_with_options(node(dw.StopDISyncInstanceRequest), runtime),
              {"Success": True, "Data.Status": "success"})
        check("GetDISyncInstanceInfo after stop",
              lambda: dataworks.get_disync_instance_info_with_options(node(dw.GetDISyncInstanceInfoRequest), runtime),
              {"Data.Status": "PAUSE"})
        check("StartDISyncInstance",
              lambda: dataworks.start_disync_instance_with_options(node(dw.StartDISyncInstanceRequest), runtime),
              {"Success": True, "Data.Status": "success"})
        check("TerminateDISyncInstance",
              lambda: dataworks.terminate_disync_instance_with_options(node(dw.TerminateDISyncInstanceRequest),
                                                                        runtime),
              {"Success": True, "Data.Status": "success"})
        check("GetDISyncInstanceInfo after terminate",
              lambda: dataworks.get_disync_instance_info_with_options(node(dw.GetDISyncInstanceInfoRequest), runtime),
              {"Data.Status": "NORUN"})
        check("GetDISyncInstanceInfo DI_SOLUTION",
              lambda: dataworks.get_disync_instance_info_with_options(
                  node(dw.GetDISyncInstanceInfoRequest, 200, "DI_SOLUTION"), runtime),
              {"Success": True, "Data.SolutionInfo.Id": 200})
        # The Tea model of GetDIJob's answer has no `Success` field: only Data is read.
        check("GetDIJob", lambda: dataworks.get_dijob_with_options(dw.GetDIJobRequest(dijob_id=11668), runtime),
              {"Data.JobStatus": "Running", "Data.DIJobId": 11668})
        check("StopDIJob (DIJobId in the form body)",
              lambda: dataworks.stop_dijob_with_options(dw.StopDIJobRequest(dijob_id=11668), runtime), {})
        check("GetDIJob after stop",
              lambda: dataworks.get_dijob_with_options(dw.GetDIJobRequest(dijob_id=11668), runtime),
              {"Data.JobStatus": "Stopped"})
        check("StartDIJob",
              lambda: dataworks.start_dijob_with_options(dw.StartDIJobRequest(dijob_id=11668), runtime), {})
        check("DescribeDtsJobDetail",
              lambda: dts_client.describe_dts_job_detail_with_options(job(dts.DescribeDtsJobDetailRequest), runtime),
              {"Success": True, "Status": "Synchronizing"})
        check("SuspendDtsJob",
              lambda: dts_client.suspend_dts_job_with_options(job(dts.SuspendDtsJobRequest), runtime),
              {"Success": True})
        check("StartDtsJob",
              lambda: dts_client.start_dts_job_with_options(job(dts.StartDtsJobRequest), runtime),
              {"Success": True})
        check("StopDtsJob Reverse",
              lambda: dts_client.stop_dts_job_with_options(job(dts.StopDtsJobRequest, "Reverse"), runtime),
              {"Success": True, "HttpStatusCode": 200})
        check("StopDtsJob",
              lambda: dts_client.stop_dts_job_with_options(job(dts.StopDtsJobRequest), runtime),
              {"Success": True, "HttpStatusCode": 200})
        check("DescribeDtsJobDetail after stop",
              lambda: dts_client.describe_dts_job_detail_with_options(job(dts.DescribeDtsJobDetailRequest), runtime),
              {"Status": "Finished"})

        # A wrong secret: the SDK must surface the server's SignatureDoesNotMatch.
        try:
            Dts(config("not-the-secret")).describe_dts_job_detail_with_options(
                job(dts.DescribeDtsJobDetailRequest), runtime)
            failures += 1
            print("FAIL wrong secret: the call succeeded")
        except TeaException as e:
            status = (e.data or {}).get("statusCode")
            if e.code == "SignatureDoesNotMatch" and status == 400:
                print(f"ok   wrong secret: HTTP {status} {e.code}")
            else:
                failures += 1
                print(f"FAIL wrong secret: HTTP {status} {e.code}: {e.message}")

        # The simulator says which signature each call carried.
        want = "v3" if args.signature == "v3" else "v1"
        with open(log.name, encoding="utf-8") as f:
            calls = [json.loads(line) for line in f if line.strip()]
        signatures = sorted({c.get("signature") for c in calls})
        if signatures == [want] and calls:
            print(f"ok   call log: {len(calls)} calls, all signed {want}")
        else:
            failures += 1
            print(f"FAIL call log: signatures {signatures}, want only {want}")
    finally:
        sim.terminate()
        sim.wait(timeout=10)
        os.unlink(log.name)
    print("all checks passed" if failures == 0 else f"{failures} checks failed")
    return 1 if failures else 0


def select(body, path):
    for key in path.split("."):
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


if __name__ == "__main__":
    sys.exit(main())
