#!/usr/bin/env python3
"""Checks the simulator against Alibaba's own Python SDK (aliyunsdkcore).

Starts `runbook sim` on a free loopback port, sends every action the
simulator serves through the official request classes of
aliyun-python-sdk-dts and aliyun-python-sdk-dataworks-public (signed by
aliyun-python-sdk-core, endpoint pointed at the simulator over http), checks
each answer, then checks that a wrong secret gets SignatureDoesNotMatch.

Setup (once):
    python3 -m venv /tmp/alisdk
    /tmp/alisdk/bin/pip install aliyun-python-sdk-core aliyun-python-sdk-dts aliyun-python-sdk-dataworks-public
Run:
    cargo build && /tmp/alisdk/bin/python scripts/python_sdk_check.py [--runbook target/debug/runbook]

Exit status 0 when every check passes.
"""

import argparse
import json
import os
import subprocess
import sys
import uuid
from urllib.parse import urlparse

from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkdataworks_public.request.v20200518 import (
    GetDIJobRequest,
    GetDISyncInstanceInfoRequest,
    StartDISyncInstanceRequest,
    StopDIJobRequest,
    StopDISyncInstanceRequest,
    TerminateDISyncInstanceRequest,
)
from aliyunsdkdts.request.v20200101 import (
    DescribeDtsJobDetailRequest,
    StartDtsJobRequest,
    StopDtsJobRequest,
    SuspendDtsJobRequest,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    parser.add_argument("--runbook", default=os.path.join(target, "debug", "runbook"))
    args = parser.parse_args()

    key_id, secret = "SDK" + uuid.uuid4().hex[:12].upper(), uuid.uuid4().hex
    env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=key_id, ALIBABA_CLOUD_ACCESS_KEY_SECRET=secret)
    sim = subprocess.Popen(
        [args.runbook, "sim", "--listen", "127.0.0.1:0", "--auto-create", "--delay", "0s", "-v"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    failures = 0
    try:
        url = urlparse(sim.stdout.readline().strip())
        print(f"simulator at {url.geturl()}")

        def client(secret_to_use):
            return AcsClient(key_id, secret_to_use, "cn-hangzhou", port=url.port, auto_retry=False)

        def send(acs, request):
            request.set_endpoint(url.hostname)
            request.set_protocol_type("http")
            return json.loads(acs.do_action_with_exception(request))

        def check(name, request, expect):
            nonlocal failures
            try:
                body = send(client(secret), request)
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
            r = cls()
            r.set_ProjectId(10000)
            r.set_FileId(file_id)
            r.set_TaskType(task_type)
            return r

        def dts(cls, job="l3m1213ye7l", direction=None):
            r = cls()
            r.set_DtsJobId(job)
            if direction:
                r.set_SynchronizationDirection(direction)
            return r

        def di_job(cls):
            r = cls()
            r.set_DIJobId(11668)
            return r

        check("GetDISyncInstanceInfo", node(GetDISyncInstanceInfoRequest.GetDISyncInstanceInfoRequest),
              {"Success": True, "Data.Status": "RUN"})
        check("StopDISyncInstance", node(StopDISyncInstanceRequest.StopDISyncInstanceRequest),
              {"Success": True, "Data.Status": "success"})
        check("GetDISyncInstanceInfo after stop", node(GetDISyncInstanceInfoRequest.GetDISyncInstanceInfoRequest),
              {"Data.Status": "PAUSE"})
        check("StartDISyncInstance", node(StartDISyncInstanceRequest.StartDISyncInstanceRequest),
              {"Success": True, "Data.Status": "success"})
        check("TerminateDISyncInstance", node(TerminateDISyncInstanceRequest.TerminateDISyncInstanceRequest),
              {"Success": True, "Data.Status": "success"})
        check("GetDISyncInstanceInfo after terminate",
              node(GetDISyncInstanceInfoRequest.GetDISyncInstanceInfoRequest), {"Data.Status": "NORUN"})
        check("GetDISyncInstanceInfo DI_SOLUTION",
              node(GetDISyncInstanceInfoRequest.GetDISyncInstanceInfoRequest, 200, "DI_SOLUTION"),
              {"Success": True, "Data.SolutionInfo.Id": 200})
        check("GetDIJob", di_job(GetDIJobRequest.GetDIJobRequest), {"Success": True, "Data.JobStatus": "Running"})
        check("StopDIJob (DIJobId in the form body)", di_job(StopDIJobRequest.StopDIJobRequest), {})
        check("GetDIJob after stop", di_job(GetDIJobRequest.GetDIJobRequest), {"Data.JobStatus": "Stopped"})
        check("DescribeDtsJobDetail", dts(DescribeDtsJobDetailRequest.DescribeDtsJobDetailRequest),
              {"Success": True, "Status": "Synchronizing"})
        check("SuspendDtsJob", dts(SuspendDtsJobRequest.SuspendDtsJobRequest), {"Success": True})
        check("StartDtsJob", dts(StartDtsJobRequest.StartDtsJobRequest), {"Success": True})
        check("StopDtsJob Reverse", dts(StopDtsJobRequest.StopDtsJobRequest, direction="Reverse"),
              {"Success": True, "HttpStatusCode": 200})
        check("StopDtsJob", dts(StopDtsJobRequest.StopDtsJobRequest), {"Success": True, "HttpStatusCode": 200})
        check("DescribeDtsJobDetail after stop", dts(DescribeDtsJobDetailRequest.DescribeDtsJobDetailRequest),
              {"Status": "Finished"})

        # A wrong secret: the SDK must surface the server's SignatureDoesNotMatch.
        try:
            send(client("not-the-secret"), dts(DescribeDtsJobDetailRequest.DescribeDtsJobDetailRequest))
            failures += 1
            print("FAIL wrong secret: the call succeeded")
        except ServerException as e:
            if e.get_error_code() == "SignatureDoesNotMatch" and e.get_http_status() == 400:
                print(f"ok   wrong secret: HTTP {e.get_http_status()} {e.get_error_code()} "
                      f"(RequestId {e.get_request_id()})")
            else:
                failures += 1
                print(f"FAIL wrong secret: HTTP {e.get_http_status()} {e.get_error_code()}: {e.get_error_msg()}")
    finally:
        sim.terminate()
        sim.wait(timeout=10)
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
