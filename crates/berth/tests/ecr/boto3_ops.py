"""Berth's ECR API through boto3 (botocore validates every answer against ECR's model).

    python3 boto3_ops.py ENDPOINT ACCESS_KEY_ID SECRET_ACCESS_KEY REPOSITORY

Prints one JSON object with what the test checks; exits non-zero on an unexpected answer.
"""
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, key, secret, repo = sys.argv[1:5]


def client(k=key, s=secret):
    return boto3.client(
        "ecr",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id=k,
        aws_secret_access_key=s,
        config=Config(retries={"max_attempts": 1}, parameter_validation=True),
    )


def error_code(f):
    try:
        f()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None


ecr = client()
out = {}
reg = ecr.describe_registry()
out["registry_id"] = reg["registryId"]
repos = ecr.describe_repositories()["repositories"]
out["repositories"] = [r["repositoryName"] for r in repos]
r = next(r for r in repos if r["repositoryName"] == repo)
out["arn"] = r["repositoryArn"]
out["uri"] = r["repositoryUri"]
# Paginators follow nextToken.
pages = list(ecr.get_paginator("list_images").paginate(repositoryName=repo, PaginationConfig={"PageSize": 1}))
out["list_pages"] = len(pages)
out["image_ids"] = sorted((i.get("imageTag", ""), i["imageDigest"]) for p in pages for i in p["imageIds"])
out["tagged_only"] = len(ecr.list_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})["imageIds"])
d = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["imageDetails"][0]
out["describe"] = {"tags": d.get("imageTags", []), "size": d["imageSizeInBytes"], "pushed": d["imagePushedAt"].isoformat(),
                   "media_type": d["imageManifestMediaType"]}
out["missing_repo"] = error_code(lambda: ecr.describe_images(repositoryName="nope/none"))
out["missing_repo_in_project"] = error_code(lambda: ecr.list_images(repositoryName="team/none"))
out["missing_image"] = error_code(lambda: ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "zzz"}]))
out["bad_max"] = error_code(lambda: ecr.list_images(repositoryName=repo, maxResults=1001))
tok = ecr.get_authorization_token()["authorizationData"][0]
out["proxy_endpoint"] = tok["proxyEndpoint"]
out["token_user"] = __import__("base64").b64decode(tok["authorizationToken"]).decode().split(":")[0]
# Wrong secret, unknown key: refused with AWS's codes.
out["wrong_secret"] = error_code(lambda: client(s="x" * 40).describe_registry())
out["unknown_key"] = error_code(lambda: client(k="AKIAAAAAAAAAAAAAAAAA").describe_registry())
out["unsupported"] = error_code(lambda: ecr.get_registry_policy())
# Repositories: create (a second time refused), delete (non-empty only with force).
out["created"] = ecr.create_repository(repositoryName="team/new")["repository"]["repositoryName"]
out["create_again"] = error_code(lambda: ecr.create_repository(repositoryName="team/new"))
out["after_create"] = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
ecr.delete_repository(repositoryName="team/new")
out["not_empty"] = error_code(lambda: ecr.delete_repository(repositoryName="team/other"))
out["forced"] = ecr.delete_repository(repositoryName="team/other", force=True)["repository"]["repositoryName"]
# Repository policies, ECR's JSON.
policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "ro", "Effect": "Allow",
                     "Principal": {"AWS": ["dev"]}, "Action": ["ecr:BatchGetImage"]}]})
ecr.set_repository_policy(repositoryName=repo, policyText=policy)
out["policy_sid"] = json.loads(ecr.get_repository_policy(repositoryName=repo)["policyText"])["Statement"][0]["Sid"]
ecr.delete_repository_policy(repositoryName=repo)
out["policy_gone"] = error_code(lambda: ecr.get_repository_policy(repositoryName=repo))
out["bad_policy"] = error_code(lambda: ecr.set_repository_policy(repositoryName=repo, policyText="{}"))
# Lifecycle policies.
rules = json.dumps({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                    "countUnit": "days", "countNumber": 14}, "action": {"type": "expire"}}]})
ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=rules)
out["lifecycle_rules"] = len(json.loads(ecr.get_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"])["rules"])
ecr.delete_lifecycle_policy(repositoryName=repo)
out["lifecycle_gone"] = error_code(lambda: ecr.get_lifecycle_policy(repositoryName=repo))
# Manifests as stored.
got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}, {"imageTag": "nope"}])
out["manifest_schema"] = json.loads(got["images"][0]["imageManifest"])["schemaVersion"]
out["get_failures"] = [f["failureCode"] for f in got["failures"]]
# Layers the repository has, or not.
layer = json.loads(got["images"][0]["imageManifest"])["layers"][0]["digest"]
avail = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[layer, "sha256:" + "0" * 64])
out["layers"] = [l["layerAvailability"] for l in avail["layers"]] + [f["failureCode"] for f in avail["failures"]]
# Scans: none yet; started; boto3's waiter until complete; findings in ECR's shape.
out["no_scan"] = error_code(lambda: ecr.describe_image_scan_findings(repositoryName="team/vuln", imageId={"imageTag": "v1"}))
started = ecr.start_image_scan(repositoryName="team/vuln", imageId={"imageTag": "v1"})
out["scan_started"] = started["imageScanStatus"]["status"]
out["scan_started_tag"] = started["imageId"].get("imageTag")
ecr.get_waiter("image_scan_complete").wait(repositoryName="team/vuln", imageId={"imageTag": "v1"},
                                           WaiterConfig={"Delay": 1, "MaxAttempts": 120})
f = ecr.describe_image_scan_findings(repositoryName="team/vuln", imageId={"imageTag": "v1"})
out["scan_status"] = f["imageScanStatus"]["status"]
out["severity_counts"] = f["imageScanFindings"]["findingSeverityCounts"]
out["source_updated"] = "vulnerabilitySourceUpdatedAt" in f["imageScanFindings"]
first = f["imageScanFindings"]["findings"][0]
out["finding"] = {"name": first["name"], "severity": first["severity"],
                  "attributes": {a["key"]: a["value"] for a in first["attributes"]}}
vd = ecr.describe_images(repositoryName="team/vuln", imageIds=[{"imageTag": "v1"}])["imageDetails"][0]
out["described_scan"] = {"status": vd["imageScanStatus"]["status"],
                         "counts": vd["imageScanFindingsSummary"]["findingSeverityCounts"]}
deleted = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "v2"}, {"imageTag": "gone"}])
out["deleted"] = [i.get("imageTag") for i in deleted["imageIds"]]
out["failures"] = [f["failureCode"] for f in deleted["failures"]]
print(json.dumps(out))
