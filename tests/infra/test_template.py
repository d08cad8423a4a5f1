"""The settings of infra/template.yaml that docfan's delivery guarantees rest on.

Each `check_*` function takes the template as a plain dict (read with cfn-lint's own
decoder, which understands the short forms !Ref, !GetAtt, !Sub) and returns the list of
problems it finds. The tests assert two things for every check:

- the real template has no problem;
- a copy weakened the way the check exists to catch (bisect switched off, retries made
  infinite, a wildcard IAM action, an alarm removed, ...) does have one — so no check
  passes vacuously, and a change that weakens the template fails the build.

cfn-lint validates the template's schema (run by tests/infra/check before this module);
these checks hold the intent.
"""

from __future__ import annotations

import copy
import json
import pathlib
import re
import tomllib
from typing import Any, Callable

import cfnlint.api
import pytest
from cfnlint.decode import decode
from samtranslator.translator.transform import transform as sam_transform

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "infra" / "template.yaml"
DEV_PARAMETERS_PATH = ROOT / "infra" / "parameters" / "dev.toml"

# The four Lambda functions and the cargo-lambda binary each is built from.
FUNCTIONS = {
    "ApiFunction": "lambda-api",
    "WebSocketFunction": "lambda-websocket",
    "StreamHandlerFunction": "lambda-stream-handler",
    "LiveStreamHandlerFunction": "lambda-stream-handler",
    "AnalysisWorkerFunction": "lambda-analysis-worker",
}
# The two consumers of the documents stream: each function's mapping, the
# DOCFAN_STREAM_CONSUMER it runs as, where it starts and its longest batching window.
STREAM_CONSUMERS = {
    "StreamHandlerFunction": {"consumer": "index", "start": "TRIM_HORIZON", "window": 300},
    "LiveStreamHandlerFunction": {"consumer": "live", "start": "LATEST", "window": 0},
}
# The functions that verify tokens, and so need the JWT secret.
JWT_FUNCTIONS = ("ApiFunction", "WebSocketFunction")

# The only actions allowed on Resource "*": AWS offers no resource-level permissions
# for them.
STAR_RESOURCE_EXCEPTIONS = {
    # X-Ray trace upload (Tracing: Active).
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    # The network interfaces Lambda manages with the role of a function in a VPC (the
    # set of AWS's AWSLambdaVPCAccessExecutionRole).
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}

# DynamoDB streams keep records for 24 hours.
STREAM_RETENTION_SECONDS = 24 * 60 * 60

Template = dict[str, Any]
Problems = list[str]


# --------------------------------------------------------------------------------------
# Reading the template
# --------------------------------------------------------------------------------------


def load_template(path: pathlib.Path = TEMPLATE_PATH) -> Template:
    """The template as plain dicts and lists; intrinsic functions in their long form."""
    template, matches = decode(str(path))
    if matches:
        raise AssertionError(f"{path} does not parse: {[str(m) for m in matches]}")
    return json.loads(json.dumps(template))


def resources(t: Template, type_: str) -> dict[str, dict]:
    return {
        name: res
        for name, res in t.get("Resources", {}).items()
        if isinstance(res, dict) and res.get("Type") == type_
    }


def props(t: Template, name: str) -> dict:
    return t.get("Resources", {}).get(name, {}).get("Properties", {}) or {}


def resolve(t: Template, value: Any) -> Any:
    """A Ref to a parameter becomes the parameter's default; anything else is as is."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        param = t.get("Parameters", {}).get(value["Ref"])
        if param is not None:
            return param.get("Default")
    return value


def as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def target(value: Any) -> tuple[str | None, str | None]:
    """(resource, attribute) named by a Ref or a GetAtt; (None, None) otherwise."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return value["Ref"], None
        if set(value) == {"Fn::GetAtt"}:
            att = value["Fn::GetAtt"]
            if isinstance(att, str):
                att = att.split(".", 1)
            if isinstance(att, list) and len(att) == 2:
                return att[0], att[1]
    return None, None


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def sub_text(value: Any) -> str | None:
    """The text of a plain string or of a Fn::Sub (either form)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        sub = value["Fn::Sub"]
        if isinstance(sub, list):
            sub = sub[0]
        return sub if isinstance(sub, str) else None
    return None


def function_property(t: Template, name: str, key: str) -> Any:
    """A function's property, falling back to Globals.Function as SAM does."""
    own = props(t, name)
    if key in own:
        return own[key]
    return t.get("Globals", {}).get("Function", {}).get(key)


def function_env(t: Template, name: str) -> dict:
    """A function's environment merged over Globals.Function's, as SAM merges them."""
    merged = dict(
        t.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        or {}
    )
    merged.update(props(t, name).get("Environment", {}).get("Variables", {}) or {})
    return merged


def key_schema(table: dict) -> dict[str, tuple[str, str | None]]:
    """KeyType → (attribute, attribute type) of a table or index."""
    types = {
        a.get("AttributeName"): a.get("AttributeType")
        for a in table.get("AttributeDefinitions", [])
    }
    return {
        k.get("KeyType"): (k.get("AttributeName"), types.get(k.get("AttributeName")))
        for k in table.get("KeySchema", [])
    }


def role_of(t: Template, function: str) -> str | None:
    name, attr = target(props(t, function).get("Role"))
    return name if attr == "Arn" else None


def role_statements(t: Template, role: str | None) -> list[dict]:
    out = []
    for policy in props(t, role).get("Policies", []) if role else []:
        out.extend(as_list(policy.get("PolicyDocument", {}).get("Statement")))
    return out


def role_allows(t: Template, role: str | None, action: str, resource: Any) -> bool:
    """Whether an Allow statement of `role` grants `action` on `resource` literally."""
    for st in role_statements(t, role):
        if st.get("Effect") != "Allow":
            continue
        if action in as_list(st.get("Action")) and resource in as_list(st.get("Resource")):
            return True
    return False


def stream_mappings(t: Template) -> dict[str, dict]:
    return {
        name: res.get("Properties", {})
        for name, res in resources(t, "AWS::Lambda::EventSourceMapping").items()
        if target(res.get("Properties", {}).get("EventSourceArn")) == ("DocumentsTable", "StreamArn")
    }


# --------------------------------------------------------------------------------------
# Lambda event filtering, the subset of the pattern language the template uses
# --------------------------------------------------------------------------------------

_MISSING = object()


def _leaf_matches(rule: Any, value: Any) -> bool:
    if isinstance(rule, dict):
        if set(rule) == {"exists"}:
            return (value is not _MISSING) == rule["exists"]
        if set(rule) == {"anything-but"}:
            excluded = as_list(rule["anything-but"])
            return value is not _MISSING and not any(
                type(value) is type(x) and value == x for x in excluded
            )
        if set(rule) == {"prefix"}:
            return isinstance(value, str) and value.startswith(rule["prefix"])
        raise ValueError(f"filter rule not understood by this test: {rule}")
    # Exact match; True must not match 1.
    return value is not _MISSING and type(value) is type(rule) and value == rule


def pattern_matches(pattern: dict, event: Any) -> bool:
    for key, rule in pattern.items():
        value = event.get(key, _MISSING) if isinstance(event, dict) else _MISSING
        if isinstance(rule, dict):
            if not pattern_matches(rule, value if isinstance(value, dict) else {}):
                return False
        elif isinstance(rule, list):
            if not any(_leaf_matches(r, value) for r in rule):
                return False
        else:
            raise ValueError(f"filter pattern not understood by this test: {pattern}")
    return True


def passes_filter(patterns: list[dict], record: dict) -> bool:
    """Lambda hands a record to the function if any pattern matches (no filters: all)."""
    return not patterns or any(pattern_matches(p, record) for p in patterns)


def _image(**extra: Any) -> dict:
    image = {
        "id": {"S": "0190a3c4-0000-7000-8000-000000000001"},
        "title": {"S": "Notes"},
        "version": {"N": "3"},
    }
    image.update(extra)
    return image


# Records as DynamoDB Streams hands them to the mapping (the part filters see).
RECORDS_TO_KEEP = {
    "INSERT": {"eventName": "INSERT", "dynamodb": {"NewImage": _image()}},
    "MODIFY (an edit)": {
        "eventName": "MODIFY",
        "dynamodb": {"OldImage": _image(), "NewImage": _image(version={"N": "4"})},
    },
    "MODIFY (deleted = false)": {
        "eventName": "MODIFY",
        "dynamodb": {"OldImage": _image(), "NewImage": _image(deleted={"BOOL": False})},
    },
    "REMOVE (the deletion)": {
        "eventName": "REMOVE",
        "dynamodb": {"OldImage": _image(deleted={"BOOL": True})},
    },
}
RECORDS_TO_DROP = {
    "MODIFY (first step of a delete)": {
        "eventName": "MODIFY",
        "dynamodb": {"OldImage": _image(), "NewImage": _image(deleted={"BOOL": True})},
    },
}


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------


def check_stream_mapping(t: Template) -> Problems:
    """The documents stream's two event source mappings, one per consumer: every knob
    set, none unbounded; the live one with no batching window."""
    problems: Problems = []
    mappings = stream_mappings(t)
    by_function = {target(p.get("FunctionName"))[0]: (name, p) for name, p in mappings.items()}
    if len(mappings) != len(STREAM_CONSUMERS) or set(by_function) != set(STREAM_CONSUMERS):
        return [
            f"expected one event source mapping on DocumentsTable's stream for each of "
            f"{sorted(STREAM_CONSUMERS)}, found {sorted(str(f) for f in by_function)}"
        ]
    for fn, want in STREAM_CONSUMERS.items():
        name, p = by_function[fn]
        problems += _check_one_mapping(t, fn, want, name, p)
    return problems


def _check_one_mapping(t: Template, fn: str, want: dict[str, Any], name: str, p: dict[str, Any]) -> Problems:
    problems: Problems = []
    if function_env(t, fn).get("DOCFAN_STREAM_CONSUMER") != want["consumer"]:
        problems.append(f"{fn}: DOCFAN_STREAM_CONSUMER must be {want['consumer']}")
    if p.get("Enabled") is False:
        problems.append(f"{name}: disabled")
    if p.get("StartingPosition") != want["start"]:
        problems.append(f"{name}: StartingPosition must be {want['start']}, not {p.get('StartingPosition')}")
    if p.get("BisectBatchOnFunctionError") is not True:
        problems.append(f"{name}: BisectBatchOnFunctionError must be true")
    if "ReportBatchItemFailures" not in as_list(p.get("FunctionResponseTypes")):
        problems.append(f"{name}: FunctionResponseTypes must include ReportBatchItemFailures")

    retries = as_int(resolve(t, p.get("MaximumRetryAttempts")))
    if retries is None or not 0 <= retries <= 10000:
        problems.append(f"{name}: MaximumRetryAttempts must be bounded (0..10000), not {retries} (-1/absent = until expiry)")
    age = as_int(resolve(t, p.get("MaximumRecordAgeInSeconds")))
    if age is None or not 60 <= age < STREAM_RETENTION_SECONDS:
        problems.append(
            f"{name}: MaximumRecordAgeInSeconds must be bounded below the stream's 24 h retention, not {age}"
        )

    batch = as_int(resolve(t, p.get("BatchSize")))
    if batch is None or not 1 <= batch <= 10000:
        problems.append(f"{name}: BatchSize must be set (1..10000), not {batch}")
    window = as_int(resolve(t, p.get("MaximumBatchingWindowInSeconds")))
    if window is None or not 0 <= window <= want["window"]:
        problems.append(f"{name}: MaximumBatchingWindowInSeconds must be set (0..{want['window']}), not {window}")
    factor = as_int(resolve(t, p.get("ParallelizationFactor")))
    if factor is None or not 1 <= factor <= 10:
        problems.append(f"{name}: ParallelizationFactor must be set (1..10), not {factor}")

    dest_name, dest_attr = target(p.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"))
    if dest_name not in resources(t, "AWS::SQS::Queue") or dest_attr != "Arn":
        problems.append(f"{name}: DestinationConfig.OnFailure must be an SQS queue of this stack")
    return problems


def check_stream_filter(t: Template) -> Problems:
    """Each mapping's filter drops exactly the first step of a delete (MODIFY to
    deleted = true)."""
    mappings = stream_mappings(t)
    if not mappings:
        return ["no event source mapping on DocumentsTable's stream"]
    problems = []
    for name, p in mappings.items():
        filters = p.get("FilterCriteria", {}).get("Filters", [])
        try:
            patterns = [json.loads(f["Pattern"]) for f in filters]
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            problems.append(f"{name}: FilterCriteria patterns are not JSON: {e}")
            continue
        for label, record in RECORDS_TO_KEEP.items():
            if not passes_filter(patterns, record):
                problems.append(f"{name}: the filter drops {label}, which must reach the handler")
        for label, record in RECORDS_TO_DROP.items():
            if passes_filter(patterns, record):
                problems.append(f"{name}: the filter lets {label} through; the deletion would fan out twice")
    return problems


def check_dead_letter_queues(t: Template) -> Problems:
    """Both dead-letter paths exist and are wired: nothing is dropped silently."""
    problems: Problems = []
    queues = resources(t, "AWS::SQS::Queue")
    handler_role = role_of(t, "StreamHandlerFunction")

    # The stream handler's own DLQ for whole poison records.
    if "PoisonRecordQueue" not in queues:
        problems.append("PoisonRecordQueue is missing")
    if function_env(t, "StreamHandlerFunction").get("DOCFAN_DEAD_LETTER_QUEUE_URL") != {"Ref": "PoisonRecordQueue"}:
        problems.append("StreamHandlerFunction: DOCFAN_DEAD_LETTER_QUEUE_URL must be PoisonRecordQueue's URL")
    if not role_allows(t, handler_role, "sqs:SendMessage", {"Fn::GetAtt": ["PoisonRecordQueue", "Arn"]}):
        problems.append("the stream handler's role cannot send to PoisonRecordQueue")

    # The mapping's on-failure destination: a queue of its own, writable by the role
    # (Lambda delivers on-failure records with the function's execution role).
    mappings = stream_mappings(t)
    for name, p in mappings.items():
        dest, _ = target(p.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"))
        if dest == "PoisonRecordQueue":
            problems.append(f"{name}: the on-failure destination must be separate from PoisonRecordQueue")
        if dest and not role_allows(t, handler_role, "sqs:SendMessage", {"Fn::GetAtt": [dest, "Arn"]}):
            problems.append(f"the stream handler's role cannot send to {name}'s on-failure queue {dest}")

    # The analysis queue and its DLQ.
    analysis = queues.get("AnalysisQueue", {}).get("Properties", {})
    dlq = queues.get("AnalysisDeadLetterQueue", {}).get("Properties")
    if dlq is None:
        problems.append("AnalysisDeadLetterQueue is missing")
        dlq = {}
    redrive = analysis.get("RedrivePolicy") or {}
    if target(redrive.get("deadLetterTargetArn")) != ("AnalysisDeadLetterQueue", "Arn"):
        problems.append("AnalysisQueue: RedrivePolicy must send to AnalysisDeadLetterQueue")
    receives = as_int(resolve(t, redrive.get("maxReceiveCount")))
    if receives is None or not 1 <= receives <= 10:
        problems.append(f"AnalysisQueue: RedrivePolicy maxReceiveCount must be 1..10, not {receives}")
    source_retention = as_int(analysis.get("MessageRetentionPeriod", 345600))
    dlq_retention = as_int(dlq.get("MessageRetentionPeriod", 345600))
    if source_retention is not None and dlq_retention is not None and dlq_retention <= source_retention:
        problems.append("AnalysisDeadLetterQueue must keep messages longer than AnalysisQueue")

    worker_timeout = as_int(function_property(t, "AnalysisWorkerFunction", "Timeout")) or 3
    visibility = as_int(analysis.get("VisibilityTimeout", 30)) or 0
    if visibility < 6 * worker_timeout:
        problems.append(
            f"AnalysisQueue: VisibilityTimeout {visibility}s must be at least 6x the worker's timeout ({worker_timeout}s)"
        )
    if function_env(t, "StreamHandlerFunction").get("DOCFAN_ANALYSIS_QUEUE_URL") != {"Ref": "AnalysisQueue"}:
        problems.append("StreamHandlerFunction: DOCFAN_ANALYSIS_QUEUE_URL must be AnalysisQueue's URL")

    worker_mappings = [
        res.get("Properties", {})
        for res in resources(t, "AWS::Lambda::EventSourceMapping").values()
        if target(res.get("Properties", {}).get("EventSourceArn")) == ("AnalysisQueue", "Arn")
    ]
    if len(worker_mappings) != 1:
        problems.append(f"expected one event source mapping on AnalysisQueue, found {len(worker_mappings)}")
    for p in worker_mappings:
        if target(p.get("FunctionName"))[0] != "AnalysisWorkerFunction":
            problems.append("the AnalysisQueue mapping must invoke AnalysisWorkerFunction")
        if "ReportBatchItemFailures" not in as_list(p.get("FunctionResponseTypes")):
            problems.append("the AnalysisQueue mapping must use ReportBatchItemFailures")
    return problems


def check_tables(t: Template) -> Problems:
    """Keys, stream, point-in-time recovery and billing of every table."""
    problems: Problems = []
    expected_keys = {
        "DocumentsTable": {"HASH": ("id", "S")},
        "MembersTable": {"HASH": ("userId", "S"), "RANGE": ("documentId", "S")},
        "VersionsTable": {"HASH": ("documentId", "S"), "RANGE": ("version", "N")},
        "ConnectionsTable": {"HASH": ("connectionId", "S")},
        "SubscriptionsTable": {"HASH": ("documentId", "S"), "RANGE": ("connectionId", "S")},
        "AuditTable": {"HASH": ("documentId", "S"), "RANGE": ("version", "N")},
        "AnalysisTable": {"HASH": ("documentId", "S")},
    }
    tables = resources(t, "AWS::DynamoDB::Table")
    for name, keys in expected_keys.items():
        if name not in tables:
            problems.append(f"{name} is missing")
            continue
        if key_schema(tables[name].get("Properties", {})) != keys:
            problems.append(f"{name}: key schema must be {keys}")
    for name, res in tables.items():
        if res.get("Properties", {}).get("BillingMode") != "PAY_PER_REQUEST":
            problems.append(f"{name}: BillingMode must be PAY_PER_REQUEST")

    docs = props(t, "DocumentsTable")
    if docs.get("StreamSpecification", {}).get("StreamViewType") != "NEW_AND_OLD_IMAGES":
        problems.append("DocumentsTable: StreamViewType must be NEW_AND_OLD_IMAGES")
    for name in ("DocumentsTable", "MembersTable", "VersionsTable", "AuditTable"):
        pitr = props(t, name).get("PointInTimeRecoverySpecification", {})
        if pitr.get("PointInTimeRecoveryEnabled") is not True:
            problems.append(f"{name}: point-in-time recovery must be on")
    # Results are written where the change stream does not see them.
    if "StreamSpecification" in props(t, "AnalysisTable"):
        problems.append("AnalysisTable must have no stream: a result must never start a fan-out")

    # A connection's subscriptions must be findable without a Scan on $disconnect.
    subs = props(t, "SubscriptionsTable")
    by_connection = [
        gsi
        for gsi in subs.get("GlobalSecondaryIndexes", [])
        if key_schema({**gsi, "AttributeDefinitions": subs.get("AttributeDefinitions", [])}).get("HASH", (None,))[0]
        == "connectionId"
    ]
    if not by_connection:
        problems.append("SubscriptionsTable: needs an index keyed by connectionId")

    # The per-user connection cap counts live connections in an index by user, which
    # must carry expiresAt so expired items are not counted (shared::aws::tables).
    conns = props(t, "ConnectionsTable")
    by_user = [
        gsi
        for gsi in conns.get("GlobalSecondaryIndexes", [])
        if gsi.get("IndexName") == "byUser"
        and key_schema({**gsi, "AttributeDefinitions": conns.get("AttributeDefinitions", [])}).get("HASH")
        == ("userId", "S")
    ]
    if not by_user:
        problems.append("ConnectionsTable: needs the index byUser keyed by userId (S)")
    elif by_user[0].get("Projection", {}).get("ProjectionType") != "ALL" and "expiresAt" not in by_user[0].get(
        "Projection", {}
    ).get("NonKeyAttributes", []):
        problems.append("ConnectionsTable: the index byUser must project expiresAt")
    return problems


def check_give_up(t: Template) -> Problems:
    """The index consumer dead-letters a failing record whole before its mapping gives
    up on it (which keeps only metadata): its give-up limits are set, strictly below the
    mapping's, and it can count attempts in its own table."""
    problems: Problems = []
    env = function_env(t, "StreamHandlerFunction")
    mapping = props(t, "DocumentsStreamMapping")
    for variable, knob in (
        ("DOCFAN_STREAM_MAX_RETRIES", "MaximumRetryAttempts"),
        ("DOCFAN_STREAM_MAX_RECORD_AGE_SECS", "MaximumRecordAgeInSeconds"),
    ):
        try:
            ours, theirs = int(env.get(variable)), int(mapping.get(knob))
        except (TypeError, ValueError):
            problems.append(f"StreamHandlerFunction: {variable} and the mapping's {knob} must be numbers")
            continue
        if theirs >= 0 and not 0 <= ours < theirs:
            problems.append(f"StreamHandlerFunction: {variable} ({ours}) must be below the mapping's {knob} ({theirs})")
    if env.get("DOCFAN_ATTEMPTS_TABLE") != {"Ref": "AttemptsTable"}:
        problems.append("StreamHandlerFunction: DOCFAN_ATTEMPTS_TABLE must be !Ref AttemptsTable")
    role = props(t, "StreamHandlerFunction").get("Role", {}).get("Fn::GetAtt", [None])[0]
    if not role_allows(t, role, "dynamodb:UpdateItem", {"Fn::GetAtt": ["AttemptsTable", "Arn"]}):
        problems.append("the stream handler's role must be allowed dynamodb:UpdateItem on AttemptsTable")
    return problems


def check_ttl(t: Template) -> Problems:
    """Stale WebSocket connections and subscriptions, and old attempt counts, expire by
    TTL on expiresAt."""
    problems: Problems = []
    for name in ("ConnectionsTable", "SubscriptionsTable", "AttemptsTable"):
        ttl = props(t, name).get("TimeToLiveSpecification", {})
        if ttl.get("Enabled") is not True or ttl.get("AttributeName") != "expiresAt":
            problems.append(f"{name}: TTL must be enabled on expiresAt")
    return problems


def _policy_documents(t: Template) -> list[tuple[str, dict]]:
    """(owner, policy document) of every identity and resource policy in the template."""
    docs = []
    for name, res in t.get("Resources", {}).items():
        p = res.get("Properties", {}) if isinstance(res, dict) else {}
        type_ = res.get("Type") if isinstance(res, dict) else None
        if type_ == "AWS::IAM::Role":
            for policy in p.get("Policies", []):
                docs.append((f"{name}/{policy.get('PolicyName')}", policy.get("PolicyDocument", {})))
        elif type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs.append((name, p.get("PolicyDocument", {})))
        elif type_ in ("AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
            docs.append((name, p.get("PolicyDocument", {})))
        elif type_ == "AWS::OpenSearchService::Domain" and "AccessPolicies" in p:
            docs.append((name, p["AccessPolicies"]))
    return docs


def _is_scoped(t: Template, resource: Any) -> bool:
    """Whether a policy resource names something of this stack."""
    name, _ = target(resource)
    if name is not None:
        return name in t.get("Resources", {})
    text = sub_text(resource)
    if text is None:
        return False
    known = set(t.get("Resources", {})) | set(t.get("Parameters", {}))
    refs = [r.split(".", 1)[0] for r in _sub_refs(text)]
    return any(r in known for r in refs)


def _sub_refs(text: str) -> list[str]:
    refs, i = [], 0
    while (start := text.find("${", i)) != -1:
        end = text.find("}", start)
        if end == -1:
            break
        ref = text[start + 2 : end]
        if not ref.startswith("!"):
            refs.append(ref)
        i = end + 1
    return refs


def check_iam(t: Template) -> Problems:
    """Least privilege: explicit actions, resources of this stack, one role per function."""
    problems: Problems = []
    for owner, doc in _policy_documents(t):
        for i, st in enumerate(as_list(doc.get("Statement"))):
            where = f"{owner} statement {st.get('Sid', i)}"
            if "NotAction" in st or "NotResource" in st:
                problems.append(f"{where}: NotAction/NotResource grant everything else")
            actions = as_list(st.get("Action"))
            for action in actions:
                if not isinstance(action, str) or "*" in action:
                    problems.append(f"{where}: wildcard or non-literal action {action!r}")
            principal = st.get("Principal")
            if principal == "*" or (isinstance(principal, dict) and "*" in as_list(principal.get("AWS"))):
                problems.append(f"{where}: Principal '*'")
            if st.get("Effect") != "Allow":
                continue
            for resource in as_list(st.get("Resource")):
                if resource == "*":
                    extra = sorted(a for a in actions if a not in STAR_RESOURCE_EXCEPTIONS)
                    if extra:
                        problems.append(f"{where}: Resource '*' for {extra}")
                elif not _is_scoped(t, resource):
                    problems.append(f"{where}: resource {resource!r} is not one of this stack's")

    for name, res in resources(t, "AWS::IAM::Role").items():
        if res.get("Properties", {}).get("ManagedPolicyArns"):
            problems.append(f"{name}: managed policies bring permissions this template does not list")

    roles_in_use: dict[str, str] = {}
    for fn in resources(t, "AWS::Serverless::Function"):
        if function_property(t, fn, "Policies"):
            problems.append(f"{fn}: use its explicit role, not SAM Policies")
        role = role_of(t, fn)
        if role is None or role not in resources(t, "AWS::IAM::Role"):
            problems.append(f"{fn}: must run with its own AWS::IAM::Role of this stack")
        elif role in roles_in_use:
            problems.append(f"{fn} and {roles_in_use[role]} share the role {role}")
        else:
            roles_in_use[role] = fn
    return problems


def _alarm_on(t: Template, namespace: str, metric: str, dimension: str, resource: str) -> list[tuple[str, dict]]:
    found = []
    for name, res in resources(t, "AWS::CloudWatch::Alarm").items():
        p = res.get("Properties", {})
        if p.get("Namespace") != namespace or p.get("MetricName") != metric:
            continue
        for d in p.get("Dimensions", []):
            if d.get("Name") == dimension and target(d.get("Value"))[0] == resource:
                found.append((name, p))
    return found


def check_alarms(t: Template) -> Problems:
    """Alarms on stream lag, every function's errors and every dead-letter queue."""
    problems: Problems = []
    expected = [("AWS/Lambda", "IteratorAge", "FunctionName", fn) for fn in STREAM_CONSUMERS]
    expected += [("AWS/Lambda", "Errors", "FunctionName", fn) for fn in FUNCTIONS]
    # Throttling on the write and fan-out paths; a mapping that cannot even write a
    # failed batch's metadata; the REST API's 5xx.
    expected += [
        ("AWS/Lambda", "Throttles", "FunctionName", fn)
        for fn in ("ApiFunction", *STREAM_CONSUMERS)
    ]
    expected += [
        ("AWS/Lambda", "DestinationDeliveryFailures", "FunctionName", fn) for fn in STREAM_CONSUMERS
    ]
    expected += [("AWS/ApiGateway", "5xx", "ApiId", "HttpApi")]
    dead_letter_queues = ["PoisonRecordQueue", "AnalysisDeadLetterQueue", "DeletionsDeadLetterQueue"]
    for p in stream_mappings(t).values():
        dest, _ = target(p.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"))
        if dest:
            dead_letter_queues.append(dest)
    expected += [
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", q) for q in dead_letter_queues
    ]
    for namespace, metric, dimension, resource in expected:
        alarms = _alarm_on(t, namespace, metric, dimension, resource)
        if not alarms:
            problems.append(f"no alarm on {namespace} {metric} of {resource}")
            continue
        for name, p in alarms:
            if not p.get("AlarmActions"):
                problems.append(f"{name}: has no AlarmActions")
            if namespace == "AWS/SQS":
                # Dead-letter queues alarm on their first message.
                if not _fires_on_first(t, p):
                    problems.append(f"{name}: must fire on the first dead-lettered message")
    return problems


def _fires_on_first(t: Template, p: dict) -> bool:
    """Whether an alarm's threshold and operator fire on a count of one."""
    op = p.get("ComparisonOperator")
    try:
        threshold = float(resolve(t, p.get("Threshold")))
    except (TypeError, ValueError):
        return False
    return (op == "GreaterThanOrEqualToThreshold" and threshold <= 1) or (
        op == "GreaterThanThreshold" and threshold < 1
    )


def check_emf_alarms(t: Template) -> Problems:
    """The functions write their metrics as EMF lines into the namespace every function
    is told (DOCFAN_METRICS_NAMESPACE), and alarms there watch the index consumer's
    dead-lettered records (from the first one) and each consumer's stream lag."""
    problems: Problems = []
    env = t.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    namespace = resolve(t, env.get("DOCFAN_METRICS_NAMESPACE"))
    if not isinstance(namespace, str) or not namespace:
        return ["Globals: every function needs DOCFAN_METRICS_NAMESPACE (its EMF namespace)"]
    for fn in FUNCTIONS:
        own = function_env(t, fn).get("DOCFAN_METRICS_NAMESPACE")
        if own is not None and resolve(t, own) != namespace:
            problems.append(f"{fn}: writes its metrics to another namespace than the alarms read")
    expected = [("RecordsDeadLettered", "StreamHandlerFunction", "Sum")]
    expected += [("StreamLag", fn, "Maximum") for fn in STREAM_CONSUMERS]
    for metric, fn, statistic in expected:
        alarms = _alarm_on(t, namespace, metric, "Function", fn)
        if not alarms:
            problems.append(f"no alarm on {namespace} {metric} of {fn}")
            continue
        for name, p in alarms:
            if not p.get("AlarmActions"):
                problems.append(f"{name}: has no AlarmActions")
            if p.get("Statistic") != statistic:
                problems.append(f"{name}: must alarm on the {statistic} of {metric}")
            if metric != "RecordsDeadLettered":
                continue
            if not _fires_on_first(t, p):
                problems.append(f"{name}: must fire on the first dead-lettered record")
    return problems


def _rule_targets(t: Template, rule: str) -> list[dict]:
    return as_list(props(t, rule).get("Targets"))


def check_event_bus(t: Template) -> Problems:
    """Events for other consumers: docfan's bus, its archive, the index consumer (and it
    alone) publishing to it with PutEvents on that bus only, and the example rule's
    queue with a dead-letter queue, a bounded retry policy, a queue policy for this rule
    only, and alarms on failed invocations and on the dead-letter queue."""
    problems: Problems = []
    buses = resources(t, "AWS::Events::EventBus")
    if list(buses) != ["EventBus"]:
        return [f"expected one AWS::Events::EventBus named EventBus, found {sorted(buses)}"]
    name = sub_text(props(t, "EventBus").get("Name"))
    if not name or not name.startswith("docfan-") or "${Stage}" not in name:
        problems.append(f"EventBus: Name must be docfan-${{Stage}}, not {name!r}")

    # The publisher.
    env = function_env(t, "StreamHandlerFunction")
    if env.get("DOCFAN_EVENT_BUS_NAME") != {"Ref": "EventBus"}:
        problems.append("StreamHandlerFunction: DOCFAN_EVENT_BUS_NAME must be !Ref EventBus")
    if "DOCFAN_EVENT_BUS_NAME" in function_env(t, "LiveStreamHandlerFunction"):
        problems.append("LiveStreamHandlerFunction must not publish events (DOCFAN_EVENT_BUS_NAME)")
    bus_arn = {"Fn::GetAtt": ["EventBus", "Arn"]}
    if not role_allows(t, role_of(t, "StreamHandlerFunction"), "events:PutEvents", bus_arn):
        problems.append("the stream handler's role cannot PutEvents to EventBus")
    for owner, doc in _policy_documents(t):
        for st in as_list(doc.get("Statement")):
            actions = [a for a in as_list(st.get("Action")) if isinstance(a, str)]
            if st.get("Effect") == "Allow" and any(a.startswith("events:") for a in actions):
                if not owner.startswith("StreamHandlerRole/"):
                    problems.append(f"{owner}: only the index stream handler may publish events")
                if actions != ["events:PutEvents"] or as_list(st.get("Resource")) != [bus_arn]:
                    problems.append(f"{owner}: grant events:PutEvents on EventBus's ARN alone")

    # The archive.
    archives = [p.get("Properties", {}) for p in resources(t, "AWS::Events::Archive").values()]
    if not any(target(a.get("SourceArn")) == ("EventBus", "Arn") for a in archives):
        problems.append("no AWS::Events::Archive on EventBus")
    for a in archives:
        days = as_int(resolve(t, a.get("RetentionDays")))
        if days is None or days < 1:
            problems.append(f"the archive's RetentionDays must be a number of days, not {days}")

    # The example rule.
    rule = props(t, "DeletionsRule")
    if target(rule.get("EventBusName"))[0] != "EventBus":
        problems.append("DeletionsRule must be on EventBus")
    pattern = rule.get("EventPattern") or {}
    if pattern.get("source") != ["docfan"] or pattern.get("detail-type") != ["document.deleted"]:
        problems.append(f"DeletionsRule: pattern must select docfan's document.deleted, not {pattern}")
    targets = _rule_targets(t, "DeletionsRule")
    if len(targets) != 1 or target(targets[0].get("Arn")) != ("DeletionsQueue", "Arn"):
        problems.append("DeletionsRule must target DeletionsQueue")
    for tg in targets:
        dlq, _ = target(tg.get("DeadLetterConfig", {}).get("Arn"))
        if dlq is None or dlq == target(tg.get("Arn"))[0]:
            problems.append("DeletionsRule's target needs a dead-letter queue of its own")
        retry = tg.get("RetryPolicy") or {}
        attempts = as_int(retry.get("MaximumRetryAttempts"))
        age = as_int(retry.get("MaximumEventAgeInSeconds"))
        if attempts is None or not 0 <= attempts <= 185 or age is None or not 60 <= age <= 86400:
            problems.append(f"DeletionsRule's target needs an explicit, bounded RetryPolicy, not {retry}")
        if dlq:
            alarms = _alarm_on(t, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dlq)
            if not alarms:
                problems.append(f"no alarm on the rule's dead-letter queue {dlq}")

    # EventBridge may send to the target and its dead-letter queue, for this rule only.
    allowed: set[str] = set()
    for res in resources(t, "AWS::SQS::QueuePolicy").values():
        for st in as_list(res.get("Properties", {}).get("PolicyDocument", {}).get("Statement")):
            principal = (st.get("Principal") or {}).get("Service")
            if st.get("Effect") != "Allow" or principal != "events.amazonaws.com":
                continue
            source = (st.get("Condition") or {}).get("ArnEquals", {}).get("aws:SourceArn")
            if target(source) != ("DeletionsRule", "Arn"):
                problems.append("a queue policy lets EventBridge send without aws:SourceArn of DeletionsRule")
                continue
            if "sqs:SendMessage" in as_list(st.get("Action")):
                allowed |= {target(r)[0] for r in as_list(st.get("Resource"))}
    for tg in targets:
        for queue in (target(tg.get("Arn"))[0], target(tg.get("DeadLetterConfig", {}).get("Arn"))[0]):
            if queue and queue not in allowed:
                problems.append(f"no queue policy lets DeletionsRule send to {queue}")

    failed = [
        p
        for p in (r.get("Properties", {}) for r in resources(t, "AWS::CloudWatch::Alarm").values())
        if p.get("Namespace") == "AWS/Events"
        and p.get("MetricName") == "FailedInvocations"
        and any(
            d.get("Name") == "RuleName" and sub_text(d.get("Value")) == sub_text(rule.get("Name"))
            for d in p.get("Dimensions", [])
        )
        and p.get("AlarmActions")
    ]
    if not failed:
        problems.append("no alarm on DeletionsRule's FailedInvocations")
    return problems


def _is_dynamic_secret_reference(value: Any) -> bool:
    text = sub_text(value)
    return text is not None and (
        text.startswith("{{resolve:secretsmanager:") or text.startswith("{{resolve:ssm-secure:")
    ) and text.endswith("}}")


def _secret_when_given(value: Any) -> Any:
    """The secret's value when JwtSecretId is given: the true branch of
    `!If [UsesJwtSecret, <reference>, !Ref AWS::NoValue]`, or the value itself."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        condition, given, otherwise = value["Fn::If"]
        if condition == "UsesJwtSecret" and otherwise == {"Ref": "AWS::NoValue"}:
            return given
        return None
    return value


def check_jwt_secret(t: Template) -> Problems:
    """The JWT secret comes from Secrets Manager, never from a literal or a parameter;
    JwtSecretId may be left empty only when an identity provider is named (a rule
    refuses a stack with neither), and then no function is given a secret."""
    problems: Problems = []
    for fn in resources(t, "AWS::Serverless::Function"):
        env = function_env(t, fn)
        if fn in JWT_FUNCTIONS and "DOCFAN_JWT_SECRET" not in env:
            problems.append(f"{fn}: DOCFAN_JWT_SECRET is missing")
        if "DOCFAN_JWT_SECRET" in env and not _is_dynamic_secret_reference(
            _secret_when_given(env["DOCFAN_JWT_SECRET"])
        ):
            problems.append(
                f"{fn}: DOCFAN_JWT_SECRET must be a Secrets Manager dynamic reference"
                " (under !If [UsesJwtSecret, …, !Ref AWS::NoValue])"
            )
    condition = t.get("Conditions", {}).get("UsesJwtSecret")
    if condition != {"Fn::Not": [{"Fn::Equals": [{"Ref": "JwtSecretId"}, ""]}]}:
        problems.append("condition UsesJwtSecret must be: JwtSecretId is not empty")
    assertions = [
        a.get("Assert")
        for rule in t.get("Rules", {}).values()
        for a in rule.get("Assertions", [])
    ]
    either = {
        "Fn::Or": [
            {"Fn::Not": [{"Fn::Equals": [{"Ref": "JwtSecretId"}, ""]}]},
            {"Fn::Not": [{"Fn::Equals": [{"Ref": "JwtJwksUrl"}, ""]}]},
        ]
    }
    if either not in assertions:
        problems.append("a rule must refuse a stack with neither JwtSecretId nor JwtJwksUrl")
    for name, param in t.get("Parameters", {}).items():
        lowered = name.lower()
        if "secret" in lowered and not lowered.endswith(("id", "arn", "name", "revision")):
            problems.append(f"parameter {name}: a secret must not be a parameter")
    return problems


# Identity from an OpenID Connect provider: each variable and the parameter it comes from.
JWT_IDENTITY = {
    "DOCFAN_JWT_JWKS_URL": "JwtJwksUrl",
    "DOCFAN_JWT_ISSUER": "JwtIssuer",
    "DOCFAN_JWT_AUDIENCE": "JwtAudience",
}


def check_jwt_identity(t: Template) -> Problems:
    """Every function that verifies tokens is told the provider, issuer and audience,
    from optional parameters (the one-command HS256 default stays the default), and the
    JWKS URL cannot be plain http."""
    problems: Problems = []
    params = t.get("Parameters", {})
    for variable, parameter in JWT_IDENTITY.items():
        if parameter not in params:
            problems.append(f"parameter {parameter} is missing")
        elif params[parameter].get("Default") != "":
            problems.append(f"parameter {parameter} must default to empty (unset)")
        for fn in JWT_FUNCTIONS:
            if function_env(t, fn).get(variable) != {"Ref": parameter}:
                problems.append(f"{fn}: {variable} must be !Ref {parameter}")
    pattern = params.get("JwtJwksUrl", {}).get("AllowedPattern", "")
    if "https://" not in pattern or "http:" in pattern.replace("https:", ""):
        problems.append("parameter JwtJwksUrl must only allow https:// URLs")
    return problems


def check_outputs(t: Template) -> Problems:
    problems: Problems = []
    outputs = t.get("Outputs", {})
    rest = sub_text(outputs.get("RestApiUrl", {}).get("Value"))
    if not rest or not rest.startswith("https://") or "${HttpApi}" not in rest:
        problems.append("output RestApiUrl must be the HTTP API's https:// URL")
    ws = sub_text(outputs.get("WebSocketUrl", {}).get("Value"))
    if not ws or not ws.startswith("wss://") or "${WebSocketApi}" not in ws or not (
        ws.endswith("/${WebSocketStage}") or ws.endswith("/${Stage}")
    ):
        problems.append("output WebSocketUrl must be wss://<api>.execute-api.<region>.<suffix>/<stage>")
    return problems


# What each function does with the versions table. The api function puts a version
# item in each document transaction and Queries operations and snapshots; the stream
# handler Queries paged-out bodies back and deletes a deleted document's items in
# batches once its deletion is delivered; the analysis worker Queries paged-out bodies.
# The WebSocket function reads only document heads and never touches it.
VERSIONS_ACTIONS = {
    "ApiFunction": {"dynamodb:Query", "dynamodb:PutItem"},
    "StreamHandlerFunction": {"dynamodb:Query", "dynamodb:BatchWriteItem"},
    "LiveStreamHandlerFunction": {"dynamodb:Query"},
    "AnalysisWorkerFunction": {"dynamodb:Query"},
}


def _grants_on(t: Template, role: str | None, table: str) -> set[str]:
    """The actions an Allow statement of `role` grants on `table` or its indexes."""
    granted: set[str] = set()
    for st in role_statements(t, role):
        if st.get("Effect") != "Allow":
            continue
        for resource in as_list(st.get("Resource")):
            text = sub_text(resource) or ""
            if target(resource)[0] == table or any(r.split(".", 1)[0] == table for r in _sub_refs(text)):
                granted.update(a for a in as_list(st.get("Action")) if isinstance(a, str))
    return granted


def check_versions(t: Template) -> Problems:
    """The kept versions: a table only the api function and the stream handler use,
    with exactly the actions each needs, and named in their environments."""
    problems: Problems = []
    if "VersionsTable" not in resources(t, "AWS::DynamoDB::Table"):
        return ["VersionsTable is missing"]
    if "StreamSpecification" in props(t, "VersionsTable"):
        problems.append("VersionsTable must have no stream: the documents stream already carries each version")
    for fn, actions in VERSIONS_ACTIONS.items():
        if function_env(t, fn).get("DOCFAN_VERSIONS_TABLE") != {"Ref": "VersionsTable"}:
            problems.append(f"{fn}: DOCFAN_VERSIONS_TABLE must be VersionsTable's name")
        granted = _grants_on(t, role_of(t, fn), "VersionsTable")
        if granted != actions:
            problems.append(f"{fn}: actions on VersionsTable must be {sorted(actions)}, not {sorted(granted)}")
    for fn in FUNCTIONS:
        if fn in VERSIONS_ACTIONS:
            continue
        others = _grants_on(t, role_of(t, fn), "VersionsTable")
        if others:
            problems.append(f"{fn}: its role needs nothing on VersionsTable, but is granted {sorted(others)}")
        if "DOCFAN_VERSIONS_TABLE" in function_env(t, fn):
            problems.append(f"{fn}: does not use DOCFAN_VERSIONS_TABLE")
    return problems


def check_functions(t: Template) -> Problems:
    """Four arm64 functions on provided.al2023, built by cargo-lambda from their binary."""
    problems: Problems = []
    for fn, binary in FUNCTIONS.items():
        res = t.get("Resources", {}).get(fn)
        if not res or res.get("Type") != "AWS::Serverless::Function":
            problems.append(f"{fn} is missing")
            continue
        if function_property(t, fn, "Runtime") != "provided.al2023":
            problems.append(f"{fn}: Runtime must be provided.al2023")
        if function_property(t, fn, "Architectures") != ["arm64"]:
            problems.append(f"{fn}: Architectures must be [arm64]")
        if function_property(t, fn, "Handler") != "bootstrap":
            problems.append(f"{fn}: Handler must be bootstrap")
        meta = res.get("Metadata", {})
        if meta.get("BuildMethod") != "rust-cargolambda":
            problems.append(f"{fn}: BuildMethod must be rust-cargolambda")
        if meta.get("BuildProperties", {}).get("Binary") != binary:
            problems.append(f"{fn}: BuildProperties.Binary must be {binary}")
    return problems


def check_websocket_api(t: Template) -> Problems:
    problems: Problems = []
    apis = {
        name: res.get("Properties", {})
        for name, res in resources(t, "AWS::ApiGatewayV2::Api").items()
        if res.get("Properties", {}).get("ProtocolType") == "WEBSOCKET"
    }
    if len(apis) != 1:
        return [f"expected one WEBSOCKET API, found {len(apis)}"]
    (api, p), = apis.items()
    if p.get("RouteSelectionExpression") != "$request.body.action":
        problems.append(f"{api}: RouteSelectionExpression must be $request.body.action")

    integrations = {
        name
        for name, res in resources(t, "AWS::ApiGatewayV2::Integration").items()
        if target(res.get("Properties", {}).get("ApiId"))[0] == api
        and "${WebSocketFunction.Arn}" in (sub_text(res.get("Properties", {}).get("IntegrationUri")) or "")
    }
    routes = {}
    for res in resources(t, "AWS::ApiGatewayV2::Route").values():
        rp = res.get("Properties", {})
        if target(rp.get("ApiId"))[0] == api:
            routes[rp.get("RouteKey")] = sub_text(rp.get("Target")) or ""
    for key in ("$connect", "$disconnect", "$default"):
        if key not in routes:
            problems.append(f"{api}: route {key} is missing")
        elif not any(routes[key] == f"integrations/${{{i}}}" for i in integrations):
            problems.append(f"{api}: route {key} must target the WebSocketFunction integration")
    if not any(
        target(res.get("Properties", {}).get("ApiId"))[0] == api
        for res in resources(t, "AWS::ApiGatewayV2::Stage").values()
    ):
        problems.append(f"{api}: no stage")
    if not any(
        target(res.get("Properties", {}).get("FunctionName"))[0] == "WebSocketFunction"
        and res.get("Properties", {}).get("Principal") == "apigateway.amazonaws.com"
        and "/${Stage}/*" in (sub_text(res.get("Properties", {}).get("SourceArn")) or "")
        for res in resources(t, "AWS::Lambda::Permission").values()
    ):
        problems.append("API Gateway has no permission to invoke WebSocketFunction on its routes")
    # The sweep of expired connections runs on a schedule, and may scan the table.
    sweeps = [
        e
        for e in (props(t, "WebSocketFunction").get("Events") or {}).values()
        if e.get("Type") == "Schedule" and str(e.get("Properties", {}).get("Schedule", "")).startswith("rate(")
    ]
    if not sweeps:
        problems.append("WebSocketFunction: needs a Schedule event (the sweep of expired connections)")
    if not role_allows(t, "WebSocketRole", "dynamodb:Scan", {"Fn::GetAtt": ["ConnectionsTable", "Arn"]}):
        problems.append("WebSocketRole: the sweep needs dynamodb:Scan on ConnectionsTable")
    # $connect is guarded by the function's REQUEST authorizer on ?token=, which API
    # Gateway may invoke.
    authorizers = {
        name: res.get("Properties", {})
        for name, res in resources(t, "AWS::ApiGatewayV2::Authorizer").items()
        if target(res.get("Properties", {}).get("ApiId"))[0] == api
    }
    connect = next(
        (
            res.get("Properties", {})
            for res in resources(t, "AWS::ApiGatewayV2::Route").values()
            if res.get("Properties", {}).get("RouteKey") == "$connect"
        ),
        {},
    )
    authorizer = target(connect.get("AuthorizerId"))[0]
    if connect.get("AuthorizationType") != "CUSTOM" or authorizer not in authorizers:
        problems.append(f"{api}: $connect must use the token authorizer (AuthorizationType CUSTOM)")
    else:
        a = authorizers[authorizer]
        if a.get("AuthorizerType") != "REQUEST" or "${WebSocketFunction.Arn}" not in (sub_text(a.get("AuthorizerUri")) or ""):
            problems.append(f"{authorizer}: must be a REQUEST authorizer run by WebSocketFunction")
        if a.get("IdentitySource") != ["route.request.querystring.token"]:
            problems.append(f"{authorizer}: the identity source must be the handshake's ?token=")
        if not any(
            target(res.get("Properties", {}).get("FunctionName"))[0] == "WebSocketFunction"
            and f"/authorizers/${{{authorizer}}}" in (sub_text(res.get("Properties", {}).get("SourceArn")) or "")
            for res in resources(t, "AWS::Lambda::Permission").values()
        ):
            problems.append(f"API Gateway has no permission to invoke WebSocketFunction as {authorizer}")
    # The function posts every reply; a route response would promise inline replies
    # (its returned body) that it never sends.
    if resources(t, "AWS::ApiGatewayV2::RouteResponse"):
        problems.append(f"{api}: no route response: replies are posted with post_to_connection")
    return problems


def check_search_domain(t: Template) -> Problems:
    """A VPC-only OpenSearch domain (external versioning needs a domain, not Serverless)."""
    problems: Problems = []
    domains = resources(t, "AWS::OpenSearchService::Domain")
    if len(domains) != 1:
        return [f"expected one OpenSearch domain, found {len(domains)}"]
    if resources(t, "AWS::OpenSearchServerless::Collection"):
        problems.append("an OpenSearch Serverless collection cannot take version_type=external writes")
    (name, res), = domains.items()
    p = res.get("Properties", {})
    if not p.get("VPCOptions", {}).get("SubnetIds"):
        problems.append(f"{name}: must be in the VPC (VPCOptions.SubnetIds)")
    if not p.get("VPCOptions", {}).get("SecurityGroupIds"):
        problems.append(f"{name}: needs a security group")
    if p.get("DomainEndpointOptions", {}).get("EnforceHTTPS") is not True:
        problems.append(f"{name}: must enforce HTTPS")
    if p.get("EncryptionAtRestOptions", {}).get("Enabled") is not True:
        problems.append(f"{name}: encryption at rest must be on")
    if p.get("NodeToNodeEncryptionOptions", {}).get("Enabled") is not True:
        problems.append(f"{name}: node-to-node encryption must be on")
    for st in as_list(p.get("AccessPolicies", {}).get("Statement")):
        principals = as_list((st.get("Principal") or {}).get("AWS") if isinstance(st.get("Principal"), dict) else st.get("Principal"))
        for principal in principals:
            role, attr = target(principal)
            if role not in resources(t, "AWS::IAM::Role") or attr != "Arn":
                problems.append(f"{name}: access policy principal {principal!r} is not a role of this stack")
        # Each role its own verbs: the api only reads; both only on the documents index
        # and the cluster health, never the whole domain.
        actions = set(as_list(st.get("Action")))
        if any(target(pr)[0] == "ApiRole" for pr in principals) and actions & {"es:ESHttpPut", "es:ESHttpDelete", "es:ESHttpPatch", "es:*"}:
            problems.append(f"{name}: the api role may only read the index (GET, HEAD, POST)")
        for resource in as_list(st.get("Resource")):
            text = sub_text(resource) or ""
            scope = text.split(":domain/${SearchDomainName}", 1)[-1]
            if scope not in ("/documents", "/documents/*", "/_cluster/health"):
                problems.append(f"{name}: access policy resource {text!r} is wider than the documents index")
    logs = p.get("LogPublishingOptions", {})
    for kind in ("ES_APPLICATION_LOGS", "SEARCH_SLOW_LOGS", "INDEX_SLOW_LOGS"):
        if logs.get(kind, {}).get("Enabled") is not True or not logs.get(kind, {}).get("CloudWatchLogsLogGroupArn"):
            problems.append(f"{name}: {kind} must be published to CloudWatch Logs")
    return problems


def check_observability(t: Template) -> Problems:
    """What an operator reads without an agent: each stream mapping's own metrics and the
    WebSocket API's access log."""
    problems: Problems = []
    for name, p in stream_mappings(t).items():
        if "EventCount" not in p.get("MetricsConfig", {}).get("Metrics", []):
            problems.append(f"{name}: MetricsConfig must turn on EventCount")
    stage = props(t, "WebSocketStage")
    destination, _ = target(stage.get("AccessLogSettings", {}).get("DestinationArn"))
    if destination not in resources(t, "AWS::Logs::LogGroup"):
        problems.append("WebSocketStage: needs AccessLogSettings into a log group of this stack")
    elif "$context.connectionId" not in stage.get("AccessLogSettings", {}).get("Format", ""):
        problems.append("WebSocketStage: the access log must carry the connection id")
    return problems


def check_dev_parameters(t: Template, path: pathlib.Path = DEV_PARAMETERS_PATH) -> Problems:
    """The dev parameters file sets only parameters the template has, and every required one."""
    with path.open("rb") as f:
        config = tomllib.load(f)
    overrides = config["default"]["deploy"]["parameters"]["parameter_overrides"]
    given = dict(o.split("=", 1) for o in overrides)
    params = t.get("Parameters", {})
    problems = [f"{path.name}: {k} is not a parameter of the template" for k in given if k not in params]
    problems += [
        f"{path.name}: required parameter {k} is not set"
        for k, v in params.items()
        if "Default" not in v and k not in given
    ]
    return problems


CHECKS: list[Callable[[Template], Problems]] = [
    check_stream_mapping,
    check_stream_filter,
    check_dead_letter_queues,
    check_tables,
    check_versions,
    check_ttl,
    check_give_up,
    check_iam,
    check_alarms,
    check_emf_alarms,
    check_jwt_secret,
    check_jwt_identity,
    check_outputs,
    check_functions,
    check_websocket_api,
    check_search_domain,
    check_observability,
    check_dev_parameters,
    check_event_bus,
]


# --------------------------------------------------------------------------------------
# Weakenings: each one must be caught by the check named with it
# --------------------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[Template], None]:
    """Sets Resources/Parameters/... at a '/'-separated path (creating dicts on the way)."""

    def mutate(t: Template) -> None:
        *parents, last = path.split("/")
        node = t
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _del(path: str) -> Callable[[Template], None]:
    def mutate(t: Template) -> None:
        *parents, last = path.split("/")
        node = t
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            del node[int(last)]
        else:
            del node[last]

    return mutate


def _append(path: str, value: Any) -> Callable[[Template], None]:
    def mutate(t: Template) -> None:
        node = t
        for key in path.split("/"):
            node = node[int(key)] if isinstance(node, list) else node[key]
        node.append(value)

    return mutate


def _statement_index(t: Template, role: str, sid: str) -> int:
    for i, st in enumerate(role_statements(t, role)):
        if st.get("Sid") == sid:
            return i
    raise KeyError(f"{role} has no statement {sid}")


def _in_statement(role: str, sid: str, key: str, value: Any) -> Callable[[Template], None]:
    def mutate(t: Template) -> None:
        statement = role_statements(t, role)[_statement_index(t, role, sid)]
        statement[key] = value

    return mutate


def _without_statement(role: str, sid: str) -> Callable[[Template], None]:
    def mutate(t: Template) -> None:
        index = _statement_index(t, role, sid)
        for policy in props(t, role).get("Policies", []):
            statements = as_list(policy.get("PolicyDocument", {}).get("Statement"))
            if index < len(statements):
                del statements[index]
                return
            index -= len(statements)

    return mutate


def _in_statement_of(policy: str, index: int, key: str, value: Any) -> Callable[[Template], None]:
    """Sets `key` of statement `index` of a resource policy (a queue policy)."""

    def mutate(t: Template) -> None:
        props(t, policy)["PolicyDocument"]["Statement"][index][key] = value

    return mutate


def _shared_role(t: Template) -> None:
    t["Resources"]["AnalysisWorkerFunction"]["Properties"]["Role"] = {"Fn::GetAtt": ["StreamHandlerRole", "Arn"]}


def _sam_policies(t: Template) -> None:
    t["Resources"]["ApiFunction"]["Properties"]["Policies"] = ["AmazonDynamoDBFullAccess"]


M = "Resources/DocumentsStreamMapping/Properties"
WEAKENINGS: list[tuple[str, Callable[[Template], Problems], Callable[[Template], None]]] = [
    # The stream mapping.
    ("bisect off", check_stream_mapping, _set(f"{M}/BisectBatchOnFunctionError", False)),
    ("bisect unset", check_stream_mapping, _del(f"{M}/BisectBatchOnFunctionError")),
    ("no partial batch response", check_stream_mapping, _set(f"{M}/FunctionResponseTypes", [])),
    ("start at LATEST", check_stream_mapping, _set(f"{M}/StartingPosition", "LATEST")),
    ("infinite retries", check_stream_mapping, _set(f"{M}/MaximumRetryAttempts", -1)),
    ("retries unset", check_stream_mapping, _del(f"{M}/MaximumRetryAttempts")),
    ("infinite record age", check_stream_mapping, _set(f"{M}/MaximumRecordAgeInSeconds", -1)),
    ("record age past retention", check_stream_mapping, _set(f"{M}/MaximumRecordAgeInSeconds", 604800)),
    ("no on-failure destination", check_stream_mapping, _del(f"{M}/DestinationConfig")),
    ("on-failure not a queue", check_stream_mapping, _set(f"{M}/DestinationConfig/OnFailure/Destination", {"Fn::GetAtt": ["AlarmTopic", "Arn"]})),
    ("batch size unset", check_stream_mapping, _del(f"{M}/BatchSize")),
    ("batch size default out of range", check_stream_mapping, _set("Parameters/StreamBatchSize/Default", 20000)),
    ("batching window unset", check_stream_mapping, _del(f"{M}/MaximumBatchingWindowInSeconds")),
    ("parallelization unset", check_stream_mapping, _del(f"{M}/ParallelizationFactor")),
    ("mapping on another source", check_stream_mapping, _set(f"{M}/EventSourceArn", {"Fn::GetAtt": ["AnalysisQueue", "Arn"]})),
    ("mapping on another function", check_stream_mapping, _set(f"{M}/FunctionName", {"Ref": "ApiFunction"})),
    ("one consumer for both mappings", check_stream_mapping, _set("Resources/LiveStreamMapping/Properties/FunctionName", {"Ref": "StreamHandlerFunction"})),
    ("no live consumer", check_stream_mapping, _del("Resources/LiveStreamMapping")),
    ("live consumer batches", check_stream_mapping, _set("Resources/LiveStreamMapping/Properties/MaximumBatchingWindowInSeconds", 1)),
    ("live function runs as index", check_stream_mapping, _set("Resources/LiveStreamHandlerFunction/Properties/Environment/Variables/DOCFAN_STREAM_CONSUMER", "index")),
    ("index function's consumer unset", check_stream_mapping, _del("Resources/StreamHandlerFunction/Properties/Environment/Variables/DOCFAN_STREAM_CONSUMER")),
    ("live mapping unfiltered", check_stream_filter, _del("Resources/LiveStreamMapping/Properties/FilterCriteria")),
    ("live lag unwatched", check_alarms, _del("Resources/LiveStreamIteratorAgeAlarm")),
    # The stream filter.
    ("no filter", check_stream_filter, _del(f"{M}/FilterCriteria")),
    ("filter keeps every MODIFY", check_stream_filter, _set(f"{M}/FilterCriteria/Filters", [{"Pattern": '{"eventName": ["INSERT", "MODIFY", "REMOVE"]}'}])),
    ("filter drops inserts and removes", check_stream_filter, _del(f"{M}/FilterCriteria/Filters/0")),
    ("filter drops plain edits", check_stream_filter, _del(f"{M}/FilterCriteria/Filters/1")),
    ("filter drops REMOVE", check_stream_filter, _set(f"{M}/FilterCriteria/Filters/0/Pattern", '{"eventName": ["INSERT"]}')),
    # Dead-letter queues.
    ("no poison-record queue", check_dead_letter_queues, _del("Resources/PoisonRecordQueue")),
    ("handler not told the poison queue", check_dead_letter_queues, _del("Resources/StreamHandlerFunction/Properties/Environment/Variables/DOCFAN_DEAD_LETTER_QUEUE_URL")),
    ("handler cannot send to the poison queue", check_dead_letter_queues, _in_statement("StreamHandlerRole", "Queues", "Resource", [{"Fn::GetAtt": ["StreamFailureQueue", "Arn"]}, {"Fn::GetAtt": ["AnalysisQueue", "Arn"]}])),
    ("handler cannot send to the on-failure queue", check_dead_letter_queues, _in_statement("StreamHandlerRole", "Queues", "Resource", [{"Fn::GetAtt": ["PoisonRecordQueue", "Arn"]}, {"Fn::GetAtt": ["AnalysisQueue", "Arn"]}])),
    ("on-failure shares the poison queue", check_dead_letter_queues, _set(f"{M}/DestinationConfig/OnFailure/Destination", {"Fn::GetAtt": ["PoisonRecordQueue", "Arn"]})),
    ("no analysis redrive", check_dead_letter_queues, _del("Resources/AnalysisQueue/Properties/RedrivePolicy")),
    ("analysis redrive to the wrong queue", check_dead_letter_queues, _set("Resources/AnalysisQueue/Properties/RedrivePolicy/deadLetterTargetArn", {"Fn::GetAtt": ["PoisonRecordQueue", "Arn"]})),
    ("maxReceiveCount unbounded", check_dead_letter_queues, _set("Resources/AnalysisQueue/Properties/RedrivePolicy/maxReceiveCount", 1000)),
    ("no analysis DLQ", check_dead_letter_queues, _del("Resources/AnalysisDeadLetterQueue")),
    ("DLQ retention not longer", check_dead_letter_queues, _set("Resources/AnalysisDeadLetterQueue/Properties/MessageRetentionPeriod", 345600)),
    ("visibility timeout too short", check_dead_letter_queues, _set("Resources/AnalysisQueue/Properties/VisibilityTimeout", 60)),
    ("worker without partial batch response", check_dead_letter_queues, _del("Resources/AnalysisQueueMapping/Properties/FunctionResponseTypes")),
    ("no worker mapping", check_dead_letter_queues, _del("Resources/AnalysisQueueMapping")),
    # Tables.
    ("stream of new images only", check_tables, _set("Resources/DocumentsTable/Properties/StreamSpecification/StreamViewType", "NEW_IMAGE")),
    ("no stream", check_tables, _del("Resources/DocumentsTable/Properties/StreamSpecification")),
    ("documents without PITR", check_tables, _set("Resources/DocumentsTable/Properties/PointInTimeRecoverySpecification/PointInTimeRecoveryEnabled", False)),
    ("audit without PITR", check_tables, _del("Resources/AuditTable/Properties/PointInTimeRecoverySpecification")),
    ("audit version as a string", check_tables, _set("Resources/AuditTable/Properties/AttributeDefinitions/1/AttributeType", "S")),
    ("members without sort key", check_tables, _del("Resources/MembersTable/Properties/KeySchema/1")),
    ("analysis results streamed", check_tables, _set("Resources/AnalysisTable/Properties/StreamSpecification", {"StreamViewType": "NEW_IMAGE"})),
    ("give-up retries as many as the mapping's", check_give_up, _set("Resources/StreamHandlerFunction/Properties/Environment/Variables/DOCFAN_STREAM_MAX_RETRIES", "10")),
    ("give-up age past the mapping's", check_give_up, _set("Resources/StreamHandlerFunction/Properties/Environment/Variables/DOCFAN_STREAM_MAX_RECORD_AGE_SECS", "7200")),
    ("no give-up age", check_give_up, _del("Resources/StreamHandlerFunction/Properties/Environment/Variables/DOCFAN_STREAM_MAX_RECORD_AGE_SECS")),
    ("attempts not counted", check_give_up, _del("Resources/StreamHandlerFunction/Properties/Environment/Variables/DOCFAN_ATTEMPTS_TABLE")),
    ("attempts table unwritable", check_give_up, _without_statement("StreamHandlerRole", "Attempts")),
    ("attempt counts kept for ever", check_ttl, _del("Resources/AttemptsTable/Properties/TimeToLiveSpecification")),
    ("no index by user", check_tables, _del("Resources/ConnectionsTable/Properties/GlobalSecondaryIndexes")),
    ("index by user counts expired connections", check_tables, _set("Resources/ConnectionsTable/Properties/GlobalSecondaryIndexes/0/Projection", {"ProjectionType": "KEYS_ONLY"})),
    ("provisioned billing", check_tables, _set("Resources/ConnectionsTable/Properties/BillingMode", "PROVISIONED")),
    ("no subscriptions-by-connection index", check_tables, _del("Resources/SubscriptionsTable/Properties/GlobalSecondaryIndexes")),
    ("versions without PITR", check_tables, _set("Resources/VersionsTable/Properties/PointInTimeRecoverySpecification/PointInTimeRecoveryEnabled", False)),
    ("versions keyed by a string version", check_tables, _set("Resources/VersionsTable/Properties/AttributeDefinitions/1/AttributeType", "S")),
    # The versions table and who may touch it.
    ("no versions table", check_versions, _del("Resources/VersionsTable")),
    ("versions streamed", check_versions, _set("Resources/VersionsTable/Properties/StreamSpecification", {"StreamViewType": "NEW_IMAGE"})),
    ("api not told the versions table", check_versions, _del("Resources/ApiFunction/Properties/Environment/Variables/DOCFAN_VERSIONS_TABLE")),
    ("api cannot put versions", check_versions, _in_statement("ApiRole", "Versions", "Action", ["dynamodb:Query"])),
    ("api may scan versions", check_versions, _in_statement("ApiRole", "Versions", "Action", ["dynamodb:Query", "dynamodb:PutItem", "dynamodb:Scan"])),
    ("api may delete versions", check_versions, _in_statement("ApiRole", "Versions", "Action", ["dynamodb:Query", "dynamodb:PutItem", "dynamodb:BatchWriteItem"])),
    ("stream handler not told the versions table", check_versions, _del("Resources/StreamHandlerFunction/Properties/Environment/Variables/DOCFAN_VERSIONS_TABLE")),
    ("stream handler cannot forget versions", check_versions, _in_statement("StreamHandlerRole", "Versions", "Action", ["dynamodb:Query"])),
    ("stream handler may put versions", check_versions, _in_statement("StreamHandlerRole", "Versions", "Action", ["dynamodb:Query", "dynamodb:BatchWriteItem", "dynamodb:PutItem"])),
    ("versions granted on documents' statement", check_versions, _in_statement("ApiRole", "Documents", "Resource", [{"Fn::GetAtt": ["DocumentsTable", "Arn"]}, {"Fn::GetAtt": ["VersionsTable", "Arn"]}])),
    ("websocket reads versions", check_versions, _in_statement("WebSocketRole", "DocumentsAndHistory", "Resource", [{"Fn::GetAtt": ["DocumentsTable", "Arn"]}, {"Fn::GetAtt": ["AuditTable", "Arn"]}, {"Fn::GetAtt": ["VersionsTable", "Arn"]}])),
    ("worker not told the versions table", check_versions, _del("Resources/AnalysisWorkerFunction/Properties/Environment/Variables/DOCFAN_VERSIONS_TABLE")),
    ("websocket told the versions table", check_versions, _set("Resources/WebSocketFunction/Properties/Environment/Variables/DOCFAN_VERSIONS_TABLE", {"Ref": "VersionsTable"})),
    # TTL.
    ("connections TTL off", check_ttl, _set("Resources/ConnectionsTable/Properties/TimeToLiveSpecification/Enabled", False)),
    ("subscriptions without TTL", check_ttl, _del("Resources/SubscriptionsTable/Properties/TimeToLiveSpecification")),
    ("TTL on another attribute", check_ttl, _set("Resources/ConnectionsTable/Properties/TimeToLiveSpecification/AttributeName", "ttl")),
    # IAM.
    ("dynamodb:*", check_iam, _in_statement("ApiRole", "Documents", "Action", ["dynamodb:*"])),
    ("action *", check_iam, _in_statement("StreamHandlerRole", "Audit", "Action", "*")),
    ("partial wildcard action", check_iam, _in_statement("AnalysisWorkerRole", "Results", "Action", ["dynamodb:Get*"])),
    ("Resource * on a table action", check_iam, _in_statement("WebSocketRole", "Connections", "Resource", "*")),
    ("resource outside the stack", check_iam, _in_statement("ApiRole", "Members", "Resource", "arn:aws:dynamodb:*:*:table/*")),
    ("NotAction", check_iam, _append("Resources/ApiRole/Properties/Policies/0/PolicyDocument/Statement", {"Effect": "Allow", "NotAction": "iam:PassRole", "Resource": {"Fn::GetAtt": ["DocumentsTable", "Arn"]}})),
    ("managed policy", check_iam, _set("Resources/ApiRole/Properties/ManagedPolicyArns", ["arn:aws:iam::aws:policy/AdministratorAccess"])),
    ("SAM managed policy", check_iam, _sam_policies),
    ("shared role", check_iam, _shared_role),
    ("search open to everyone", check_iam, _set("Resources/SearchDomain/Properties/AccessPolicies/Statement/0/Principal", {"AWS": "*"})),
    # Alarms.
    ("no iterator age alarm", check_alarms, _del("Resources/StreamIteratorAgeAlarm")),
    ("iterator age alarm on another metric", check_alarms, _set("Resources/StreamIteratorAgeAlarm/Properties/MetricName", "Duration")),
    ("no websocket errors alarm", check_alarms, _del("Resources/WebSocketErrorsAlarm")),
    ("poison alarm on another queue", check_alarms, _set("Resources/PoisonRecordQueueDepthAlarm/Properties/Dimensions/0/Value", {"Fn::GetAtt": ["AnalysisQueue", "QueueName"]})),
    ("no on-failure queue alarm", check_alarms, _del("Resources/StreamFailureQueueDepthAlarm")),
    ("analysis DLQ alarm late", check_alarms, _set("Resources/AnalysisDeadLetterQueueDepthAlarm/Properties/Threshold", 100)),
    ("alarm without action", check_alarms, _del("Resources/StreamHandlerErrorsAlarm/Properties/AlarmActions")),
    # The JWT secret.
    ("literal secret", check_jwt_secret, _set("Resources/ApiFunction/Properties/Environment/Variables/DOCFAN_JWT_SECRET", "change-me")),
    ("secret from a parameter", check_jwt_secret, _set("Resources/WebSocketFunction/Properties/Environment/Variables/DOCFAN_JWT_SECRET", {"Ref": "JwtSecretId"})),
    ("literal secret in Globals", check_jwt_secret, _set("Globals/Function/Environment/Variables/DOCFAN_JWT_SECRET", "change-me")),
    ("websocket without the secret", check_jwt_secret, _del("Resources/WebSocketFunction/Properties/Environment/Variables/DOCFAN_JWT_SECRET")),
    ("secret parameter", check_jwt_secret, _set("Parameters/JwtSecret", {"Type": "String", "NoEcho": True, "Default": "change-me"})),
    ("literal secret when no id", check_jwt_secret, _set("Resources/ApiFunction/Properties/Environment/Variables/DOCFAN_JWT_SECRET", {"Fn::If": ["UsesJwtSecret", {"Fn::Sub": "{{resolve:secretsmanager:${JwtSecretId}:SecretString}}"}, "change-me"]})),
    ("neither secret nor provider required", check_jwt_secret, _del("Rules/TokensCanBeVerified")),
    ("secret used whatever the id", check_jwt_secret, _set("Conditions/UsesJwtSecret", {"Fn::Equals": ["true", "true"]})),
    # Identity from a provider.
    ("websocket not told the issuer", check_jwt_identity, _del("Resources/WebSocketFunction/Properties/Environment/Variables/DOCFAN_JWT_ISSUER")),
    ("api audience a literal", check_jwt_identity, _set("Resources/ApiFunction/Properties/Environment/Variables/DOCFAN_JWT_AUDIENCE", "docfan")),
    ("no JWKS URL parameter", check_jwt_identity, _del("Parameters/JwtJwksUrl")),
    ("provider required", check_jwt_identity, _del("Parameters/JwtJwksUrl/Default")),
    ("JWKS URL over plain http", check_jwt_identity, _set("Parameters/JwtJwksUrl/AllowedPattern", "^(https?://[^\\s]+)?$")),
    # Outputs.
    ("no WebSocket URL", check_outputs, _del("Outputs/WebSocketUrl")),
    ("WebSocket URL without TLS", check_outputs, _set("Outputs/WebSocketUrl/Value", {"Fn::Sub": "ws://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${WebSocketStage}"})),
    ("WebSocket URL without stage", check_outputs, _set("Outputs/WebSocketUrl/Value", {"Fn::Sub": "wss://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"})),
    ("no REST URL", check_outputs, _del("Outputs/RestApiUrl")),
    # Functions.
    ("old runtime", check_functions, _set("Globals/Function/Runtime", "provided.al2")),
    ("x86_64", check_functions, _set("Resources/StreamHandlerFunction/Properties/Architectures", ["x86_64"])),
    ("wrong binary", check_functions, _set("Resources/ApiFunction/Metadata/BuildProperties/Binary", "docfan")),
    ("not built by cargo-lambda", check_functions, _set("Resources/AnalysisWorkerFunction/Metadata/BuildMethod", "makefile")),
    ("a function missing", check_functions, _del("Resources/AnalysisWorkerFunction")),
    # The WebSocket API.
    ("route selection on another field", check_websocket_api, _set("Resources/WebSocketApi/Properties/RouteSelectionExpression", "$request.body.type")),
    ("no $disconnect", check_websocket_api, _del("Resources/DisconnectRoute")),
    ("route without integration", check_websocket_api, _del("Resources/DefaultRoute/Properties/Target")),
    ("no invoke permission", check_websocket_api, _del("Resources/WebSocketInvokePermission")),
    ("no stage", check_websocket_api, _del("Resources/WebSocketStage")),
    ("no sweep", check_websocket_api, _del("Resources/WebSocketFunction/Properties/Events/Sweep")),
    ("sweep cannot scan", check_websocket_api, _in_statement("WebSocketRole", "Connections", "Action", ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"])),
    ("$connect without the authorizer", check_websocket_api, _set("Resources/ConnectRoute/Properties/AuthorizationType", "NONE")),
    ("authorizer on another identity", check_websocket_api, _set("Resources/ConnectAuthorizer/Properties/IdentitySource", ["route.request.header.Authorization"])),
    ("authorizer run by another function", check_websocket_api, _set("Resources/ConnectAuthorizer/Properties/AuthorizerUri", {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${ApiFunction.Arn}/invocations"})),
    ("authorizer may not be invoked", check_websocket_api, _del("Resources/ConnectAuthorizerInvokePermission")),
    ("route response promised", check_websocket_api, _set("Resources/DefaultRouteResponse", {"Type": "AWS::ApiGatewayV2::RouteResponse", "Properties": {"ApiId": {"Ref": "WebSocketApi"}, "RouteId": {"Ref": "DefaultRoute"}, "RouteResponseKey": "$default"}})),
    # Search.
    ("public domain", check_search_domain, _del("Resources/SearchDomain/Properties/VPCOptions")),
    ("plain HTTP allowed", check_search_domain, _set("Resources/SearchDomain/Properties/DomainEndpointOptions/EnforceHTTPS", False)),
    ("unencrypted domain", check_search_domain, _set("Resources/SearchDomain/Properties/EncryptionAtRestOptions/Enabled", False)),
    ("access policy for anyone", check_search_domain, _set("Resources/SearchDomain/Properties/AccessPolicies/Statement/0/Principal", {"AWS": "*"})),
    ("api may delete from the index", check_search_domain, _set("Resources/SearchDomain/Properties/AccessPolicies/Statement/0/Action", ["es:ESHttpGet", "es:ESHttpPost", "es:ESHttpDelete"])),
    ("policy on the whole domain", check_search_domain, _set("Resources/SearchDomain/Properties/AccessPolicies/Statement/1/Resource", {"Fn::Sub": "arn:${AWS::Partition}:es:${AWS::Region}:${AWS::AccountId}:domain/${SearchDomainName}/*"})),
    ("no slow logs", check_search_domain, _del("Resources/SearchDomain/Properties/LogPublishingOptions/SEARCH_SLOW_LOGS")),
    ("mapping without metrics", check_observability, _del("Resources/LiveStreamMapping/Properties/MetricsConfig")),
    ("no WebSocket access log", check_observability, _del("Resources/WebSocketStage/Properties/AccessLogSettings")),
    ("no throttles alarm", check_alarms, _del("Resources/LiveStreamHandlerThrottlesAlarm")),
    ("no destination failures alarm", check_alarms, _del("Resources/StreamDestinationDeliveryFailuresAlarm")),
    ("no API 5xx alarm", check_alarms, _del("Resources/HttpApi5xxAlarm")),
    ("no dead-lettered records alarm", check_emf_alarms, _del("Resources/StreamRecordsDeadLetteredAlarm")),
    ("dead-lettered alarm late", check_emf_alarms, _set("Resources/StreamRecordsDeadLetteredAlarm/Properties/Threshold", 10)),
    ("dead-lettered alarm on another function", check_emf_alarms, _set("Resources/StreamRecordsDeadLetteredAlarm/Properties/Dimensions/0/Value", {"Ref": "LiveStreamHandlerFunction"})),
    ("live EMF lag unwatched", check_emf_alarms, _del("Resources/LiveStreamLagAlarm")),
    ("EMF lag alarm on the average", check_emf_alarms, _set("Resources/StreamLagAlarm/Properties/Statistic", "Average")),
    ("EMF alarm in another namespace", check_emf_alarms, _set("Resources/StreamLagAlarm/Properties/Namespace", "AWS/Lambda")),
    ("metrics namespace unset", check_emf_alarms, _del("Globals/Function/Environment/Variables/DOCFAN_METRICS_NAMESPACE")),
    ("a function writes elsewhere", check_emf_alarms, _set("Resources/StreamHandlerFunction/Properties/Environment/Variables/DOCFAN_METRICS_NAMESPACE", "other")),
    ("serverless collection", check_search_domain, _set("Resources/SearchCollection", {"Type": "AWS::OpenSearchServerless::Collection", "Properties": {"Name": "docfan", "Type": "SEARCH"}})),
    # Events for other consumers.
    ("no event bus", check_event_bus, _del("Resources/EventBus")),
    ("bus named without the stage", check_event_bus, _set("Resources/EventBus/Properties/Name", "docfan")),
    ("handler not told the bus", check_event_bus, _del("Resources/StreamHandlerFunction/Properties/Environment/Variables/DOCFAN_EVENT_BUS_NAME")),
    ("live consumer publishes", check_event_bus, _set("Resources/LiveStreamHandlerFunction/Properties/Environment/Variables/DOCFAN_EVENT_BUS_NAME", {"Ref": "EventBus"})),
    ("handler cannot publish", check_event_bus, _without_statement("StreamHandlerRole", "PublishEvents")),
    ("publish to any bus", check_event_bus, _in_statement("StreamHandlerRole", "PublishEvents", "Resource", {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/*"})),
    ("more than PutEvents", check_event_bus, _in_statement("StreamHandlerRole", "PublishEvents", "Action", ["events:PutEvents", "events:PutRule"])),
    ("another role publishes", check_event_bus, _append("Resources/ApiRole/Properties/Policies/0/PolicyDocument/Statement", {"Effect": "Allow", "Action": "events:PutEvents", "Resource": {"Fn::GetAtt": ["EventBus", "Arn"]}})),
    ("no archive", check_event_bus, _del("Resources/EventArchive")),
    ("archive of another source", check_event_bus, _set("Resources/EventArchive/Properties/SourceArn", {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default"})),
    ("rule on the default bus", check_event_bus, _del("Resources/DeletionsRule/Properties/EventBusName")),
    ("rule selects everything", check_event_bus, _set("Resources/DeletionsRule/Properties/EventPattern", {"source": ["docfan"]})),
    ("rule target without DLQ", check_event_bus, _del("Resources/DeletionsRule/Properties/Targets/0/DeadLetterConfig")),
    ("rule target without retry policy", check_event_bus, _del("Resources/DeletionsRule/Properties/Targets/0/RetryPolicy")),
    ("queue policy for any rule", check_event_bus, _del("Resources/DeletionsQueuesPolicy/Properties/PolicyDocument/Statement/0/Condition")),
    ("rule cannot reach its DLQ", check_event_bus, _in_statement_of("DeletionsQueuesPolicy", 0, "Resource", [{"Fn::GetAtt": ["DeletionsQueue", "Arn"]}])),
    ("no failed-invocations alarm", check_event_bus, _del("Resources/DeletionsRuleFailedInvocationsAlarm")),
    ("rule DLQ unwatched", check_alarms, _del("Resources/DeletionsDeadLetterQueueDepthAlarm")),
    # The dev parameters file against the template.
    ("parameter removed from the template", check_dev_parameters, _del("Parameters/StreamBatchSize")),
    ("new required parameter", check_dev_parameters, _set("Parameters/OperatorEmail", {"Type": "String"})),
]


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_template_passes(template: Template, check: Callable[[Template], Problems]) -> None:
    assert check(template) == []


@pytest.mark.parametrize(
    "check, weaken",
    [(check, weaken) for _, check, weaken in WEAKENINGS],
    ids=[label for label, _, _ in WEAKENINGS],
)
def test_weakened_template_fails(
    template: Template, check: Callable[[Template], Problems], weaken: Callable[[Template], None]
) -> None:
    weakened = copy.deepcopy(template)
    weaken(weakened)
    assert check(weakened), f"{check.__name__} did not notice the weakening"


def test_every_check_is_shown_to_fail() -> None:
    exercised = {check for _, check, _ in WEAKENINGS}
    assert [c.__name__ for c in CHECKS if c not in exercised] == []


def test_weakened_template_file_fails(tmp_path: pathlib.Path) -> None:
    """The same through the loader: a weakened copy of the file, read back from disk."""
    text = TEMPLATE_PATH.read_text()
    assert text.count("BisectBatchOnFunctionError: true") == len(STREAM_CONSUMERS)
    weakened = tmp_path / "template.yaml"
    weakened.write_text(
        text.replace("BisectBatchOnFunctionError: true", "BisectBatchOnFunctionError: false").replace(
            "MaximumRetryAttempts: 10\n", "MaximumRetryAttempts: -1\n"
        )
    )
    problems = check_stream_mapping(load_template(weakened))
    assert any("BisectBatchOnFunctionError" in p for p in problems)
    assert any("MaximumRetryAttempts" in p for p in problems)


class _NoManagedPolicies:
    """The template names no managed policies, so the transform needs none."""

    def load(self) -> dict:
        return {}


def transformed(t: Template) -> Template:
    """The CloudFormation template SAM produces, after `sam package` set the code's S3 URI."""
    packaged = copy.deepcopy(t)
    packaged.setdefault("Globals", {}).setdefault("Function", {})["CodeUri"] = "s3://docfan-artifacts/code.zip"
    for fn in resources(packaged, "AWS::Serverless::Function"):
        packaged["Resources"][fn].get("Properties", {}).pop("CodeUri", None)
    return sam_transform(packaged, {}, _NoManagedPolicies())


def test_transformed_template_lints_clean(template: Template, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SAM transform accepts the template (including the function events cfn-lint
    does not look into), and cfn-lint finds nothing in what it produces."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    cfn = transformed(template)
    types = {res["Type"] for res in cfn["Resources"].values()}
    assert "AWS::Lambda::Function" in types and not any(t.startswith("AWS::Serverless::") for t in types)
    # The HTTP API's route to the api function, and its permission to invoke it.
    assert any(
        res["Type"] == "AWS::Lambda::Permission"
        and target(res["Properties"].get("FunctionName"))[0] == "ApiFunction"
        for res in cfn["Resources"].values()
    )
    matches = cfnlint.api.lint(json.dumps(cfn), config=cfnlint.api.ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []


def test_transform_rejects_a_misspelt_event_property(template: Template, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    weakened = copy.deepcopy(template)
    event = weakened["Resources"]["ApiFunction"]["Properties"]["Events"]["Http"]["Properties"]
    event["PayloadFormatVersio"] = event.pop("PayloadFormatVersion")
    with pytest.raises(Exception, match="PayloadFormatVersio"):
        transformed(weakened)


# The columns of the environment table in the template's header comment.
ENV_TABLE_COLUMNS = {
    "api": "ApiFunction",
    "websocket": "WebSocketFunction",
    "stream-handler": "StreamHandlerFunction",
    "analysis-worker": "AnalysisWorkerFunction",
    "live-stream-handler": "LiveStreamHandlerFunction",
}


def documented_environment(text: str) -> dict[str, set[str]]:
    """Function → variables, as the template's header comment table lists them."""
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("#   variable "))
    columns = {ENV_TABLE_COLUMNS[name]: lines[header].index(name) for name in ENV_TABLE_COLUMNS}
    documented: dict[str, set[str]] = {fn: set() for fn in columns}
    for line in lines[header + 1 :]:
        if not line.startswith("#   ") or not line[4:].strip():
            break
        variable = line[4:].split()[0]
        for fn, start in columns.items():
            name_width = len(next(k for k, v in ENV_TABLE_COLUMNS.items() if v == fn))
            if "x" in line[start : start + name_width]:
                documented[fn].add(variable)
    return documented


def environment_problems(t: Template, text: str) -> Problems:
    documented = documented_environment(text)
    problems = []
    for fn in FUNCTIONS:
        actual = set(function_env(t, fn))
        if actual != documented.get(fn, set()):
            problems.append(
                f"{fn}: environment {sorted(actual)} differs from the header table {sorted(documented.get(fn, set()))}"
            )
    return problems


def test_environment_table_matches_the_functions(template: Template) -> None:
    """The header comment's table of environment variables is the functions' truth."""
    text = TEMPLATE_PATH.read_text()
    assert environment_problems(template, text) == []
    weakened = copy.deepcopy(template)
    del weakened["Resources"]["WebSocketFunction"]["Properties"]["Environment"]["Variables"]["DOCFAN_AUDIT_TABLE"]
    assert environment_problems(weakened, text)


def test_filter_model_reads_lambda_semantics() -> None:
    """The filter matcher used above agrees with Lambda on the cases the template uses."""
    assert pattern_matches({"a": {"b": [{"exists": False}]}}, {"a": {}})
    assert pattern_matches({"a": {"b": [{"exists": False}]}}, {})
    assert not pattern_matches({"a": {"b": [{"exists": False}]}}, {"a": {"b": 1}})
    assert pattern_matches({"x": [False]}, {"x": False})
    assert not pattern_matches({"x": [False]}, {"x": 0})
    assert not pattern_matches({"x": ["A"]}, {})
    assert passes_filter([], {"anything": 1})


# --------------------------------------------------------------------------------------
# The binaries the functions are built from
# --------------------------------------------------------------------------------------

# The crates that declare the Lambda binaries.
LAMBDA_CRATES = ("api", "websocket", "stream-handler")
BUILD_SCRIPT_PATH = ROOT / "infra" / "build"


def cargo_binaries(root: pathlib.Path = ROOT) -> dict[str, dict[str, Any]]:
    """Binary → its crate, its required features, and the features cargo-lambda turns on
    for that crate (`[package.metadata.lambda.build] features`, which SAM's build relies on)."""
    binaries: dict[str, dict[str, Any]] = {}
    for crate in LAMBDA_CRATES:
        manifest = tomllib.loads((root / crate / "Cargo.toml").read_text())
        build = manifest.get("package", {}).get("metadata", {}).get("lambda", {}).get("build", {})
        for binary in manifest.get("bin", []):
            binaries[binary["name"]] = {
                "crate": crate,
                "required-features": binary.get("required-features", []),
                "lambda-features": build.get("features", []),
            }
    return binaries


def script_functions(text: str) -> tuple[list[str], list[str]]:
    """The `functions=(...)` and `features="..."` lists of infra/build."""
    lines = text.splitlines()
    functions = next(line for line in lines if line.startswith("functions=("))
    features = next(line for line in lines if line.startswith("features="))
    return functions[len("functions=(") : -1].split(), features[len("features=") :].strip('"').split(",")


def binary_problems(t: Template, binaries: dict[str, dict[str, Any]], script: str) -> Problems:
    """Each function's Binary is a binary some crate declares, cargo-lambda turns on the
    features it requires, and infra/build builds it with them."""
    problems: Problems = []
    built, built_features = script_functions(script)
    for fn in FUNCTIONS:
        binary = t["Resources"][fn].get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        found = binaries.get(binary)
        if found is None:
            problems.append(f"{fn}: no crate declares the binary {binary!r}")
            continue
        missing = set(found["required-features"]) - set(found["lambda-features"])
        if missing:
            problems.append(
                f"{fn}: {found['crate']}/Cargo.toml [package.metadata.lambda.build] lacks {sorted(missing)}"
            )
        if binary not in built:
            problems.append(f"{fn}: infra/build does not build {binary}")
        for feature in found["required-features"]:
            if f"{found['crate']}/{feature}" not in built_features:
                problems.append(f"{fn}: infra/build does not turn on {found['crate']}/{feature}")
    if sorted(built) != sorted(set(FUNCTIONS.values())):
        problems.append(f"infra/build builds {sorted(built)}, the template has {sorted(set(FUNCTIONS.values()))}")
    return problems


def test_functions_are_built_from_declared_binaries(template: Template) -> None:
    """A binary renamed in a crate (or in the template, or in infra/build) fails here."""
    binaries = cargo_binaries()
    script = BUILD_SCRIPT_PATH.read_text()
    assert binary_problems(template, binaries, script) == []

    renamed = copy.deepcopy(binaries)
    renamed["lambda-stream-handler-v2"] = renamed.pop("lambda-stream-handler")
    assert binary_problems(template, renamed, script)

    unfeatured = copy.deepcopy(binaries)
    unfeatured["lambda-api"]["lambda-features"] = []
    assert binary_problems(template, unfeatured, script)

    assert binary_problems(template, binaries, script.replace(" lambda-websocket", ""))
    assert binary_problems(template, binaries, script.replace("websocket/lambda,", ""))

    weakened = copy.deepcopy(template)
    weakened["Resources"]["WebSocketFunction"]["Metadata"]["BuildProperties"]["Binary"] = "lambda-ws"
    assert binary_problems(weakened, binaries, script)


# What each Lambda function refuses to start without (shared::aws::config::required),
# by the function the template runs it as.
REQUIRED_SOURCE = ROOT / "shared" / "src" / "aws" / "config.rs"
REQUIRED_BY = {
    "API": "ApiFunction",
    "WEBSOCKET": "WebSocketFunction",
    "INDEX_CONSUMER": "StreamHandlerFunction",
    "LIVE_CONSUMER": "LiveStreamHandlerFunction",
    "ANALYSIS_WORKER": "AnalysisWorkerFunction",
}


def required_variables(source: str) -> dict[str, list[str]]:
    """The `pub const NAME: &[&str] = &[...]` lists of the `required` module."""
    module = source[source.index("pub mod required {") :]
    return {
        name: re.findall(r'"([A-Z0-9_]+)"', body)
        for name, body in re.findall(r"pub const ([A-Z_]+): &\[&str\] = &\[(.*?)\];", module, re.S)
    }


def test_functions_are_given_every_variable_they_require(template: Template) -> None:
    """A function started by this template never stops at cold start for a variable the
    template forgot."""
    required = required_variables(REQUIRED_SOURCE.read_text())
    assert set(required) == set(REQUIRED_BY), required
    for name, function in REQUIRED_BY.items():
        assert required[name], name
        missing = [v for v in required[name] if v not in function_env(template, function)]
        assert missing == [], f"{function} lacks {missing}"
