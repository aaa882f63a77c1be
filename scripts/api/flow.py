"""A short flow through BrokeForge's API with a client generated from its OpenAPI document by
openapi-python-client (a generator no one here wrote): sign in with a token, read who we are, add a server
(and retry it with its Idempotency-Key), list servers, page them with next_cursor, read the server, read its onboarding job until it ends (its timestamps as datetimes), and get a typed error for another's
server. Every answer is parsed into the generated models, so a document that does not match what the
server sends fails here.

Usage: flow.py CLIENT_DIR BASE_URL TOKEN EMAIL PASSWORD ROOT_KEY_FILE
"""

import datetime
import sys
import time

client_dir, base_url, token, email, password, key_file = sys.argv[1:7]
sys.path.insert(0, client_dir)

from brokeforge_client import AuthenticatedClient, Client  # noqa: E402
from brokeforge_client.types import UNSET  # noqa: E402
from brokeforge_client.api.account import get_me, post_login  # noqa: E402
from brokeforge_client.api.jobs import get_jobs_id  # noqa: E402
from brokeforge_client.api.servers import get_servers, get_servers_id, post_servers  # noqa: E402
from brokeforge_client.models import (  # noqa: E402
    AddedServer,
    ErrorBody,
    JobResponse,
    JobStatus,
    LoginRequest,
    LoginResponse,
    NewServer,
    ServerDetail,
    ServerList,
    UserResponse,
)


def check(what, cond, detail=""):
    if not cond:
        sys.exit(f"api flow: {what} failed {detail}")
    print(f"api flow: {what}: ok")


api = AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)

me = get_me.sync(client=api)
check("token sign-in", isinstance(me, UserResponse) and me.user.email == email, repr(me))

session = post_login.sync(client=Client(base_url=base_url), body=LoginRequest(email=email, password=password))
check("password sign-in", isinstance(session, LoginResponse) and len(session.csrf_token) > 10, repr(session))

with open(key_file) as f:
    root_key = f.read()
# Port 1 on loopback refuses: the onboarding job is queued, runs and fails with a clear error.
new = NewServer(name="api-flow", public_ip="127.0.0.1", ssh_port=1, root_key=root_key, trust_on_first_use=True)
added = post_servers.sync(client=api, body=new, idempotency_key="api-flow-1")
check("add a server", isinstance(added, AddedServer) and added.server.name == "api-flow" and added.job, repr(added))
# The same request again with its key (a retry after a lost answer): the first answer, nothing added twice.
again = post_servers.sync(client=api, body=new, idempotency_key="api-flow-1")
check("retry with the key", isinstance(again, AddedServer) and again.server.id == added.server.id and again.job.id == added.job.id, repr(again))

listed = get_servers.sync(client=api, search="api-flow")
check("list servers", isinstance(listed, ServerList) and [e.server.id for e in listed.servers] == [added.server.id], repr(listed))

# Paging: a second server, then the list one at a time, each page's next_cursor giving the next.
second = post_servers.sync(
    client=api,
    body=NewServer(name="api-flow-2", public_ip="127.0.0.1", ssh_port=1, root_key=root_key, trust_on_first_use=True),
)
check("add a second server", isinstance(second, AddedServer), repr(second))
seen, cursor = [], UNSET
for _ in range(5):
    page = get_servers.sync(client=api, search="api-flow", limit=1, cursor=cursor)
    if not isinstance(page, ServerList):
        sys.exit(f"api flow: page the servers: {page!r}")
    seen += [e.server.name for e in page.servers]
    if not page.next_cursor:
        break
    cursor = page.next_cursor
check("page the servers with next_cursor", seen == ["api-flow", "api-flow-2"], repr(seen))

detail = get_servers_id.sync(id=added.server.id, client=api)
check("read the server", isinstance(detail, ServerDetail) and detail.server.public_ip == "127.0.0.1", repr(detail))

deadline = time.time() + 60
while True:
    job = get_jobs_id.sync(id=added.job.id, client=api)
    if not isinstance(job, JobResponse):
        sys.exit(f"api flow: read the job: {job!r}")
    if job.job.status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED):
        break
    if time.time() > deadline:
        sys.exit(f"api flow: the job did not end: {job!r}")
    time.sleep(0.2)
check("read the job", job.job.status == JobStatus.FAILED and job.job.error, repr(job))
# Timestamps are RFC 3339: the generated model reads them as aware datetimes, in order.
j = job.job
check(
    "job timestamps",
    isinstance(j.created_at, datetime.datetime)
    and j.created_at.tzinfo is not None
    and isinstance(j.finished_at, datetime.datetime)
    and j.created_at <= j.finished_at <= datetime.datetime.now(datetime.timezone.utc),
    repr(j),
)

missing = get_servers_id.sync(id=added.server.id + 1000, client=api)
check("a typed error", isinstance(missing, ErrorBody) and missing.error.code == "not_found", repr(missing))
