"""The rest of Berth's ECR API through boto3, as a system administrator: repository settings
and resource tags, PutImage, lifecycle previews (with boto3's waiter), registry scanning,
replication and pull-through cache rules; and a project member refused the registry's settings.

    python3 boto3_admin.py ENDPOINT KEY SECRET MEMBER_KEY MEMBER_SECRET ENDPOINT_ID UPSTREAM_URL

Prints one JSON object with what the test checks; exits non-zero on an unexpected answer.
"""
import datetime
import json
import sys
import urllib.error
import urllib.request

import boto3
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, key, secret, member_key, member_secret, endpoint_id, upstream = sys.argv[1:8]


def client(k, s, region="ap-south-1"):
    return boto3.client("ecr", endpoint_url=endpoint, region_name=region, aws_access_key_id=k,
                        aws_secret_access_key=s, config=Config(retries={"max_attempts": 1}))


def error(f):
    try:
        f()
    except ClientError as e:
        return [e.response["Error"]["Code"], e.response["Error"]["Message"]]
    return None


ecr = client(key, secret)
member = client(member_key, member_secret)
out = {}

# CreateRepository with its settings and tags; DescribeRepositories shows them.
made = ecr.create_repository(repositoryName="team/made", imageTagMutability="IMMUTABLE",
                             imageScanningConfiguration={"scanOnPush": True},
                             tags=[{"Key": "owner", "Value": "ml"}])["repository"]
out["made"] = {"mutability": made["imageTagMutability"], "scan": made["imageScanningConfiguration"]["scanOnPush"]}
out["no_project"] = error(lambda: ecr.create_repository(repositoryName="nosuch/app"))
d = ecr.describe_repositories(repositoryNames=["team/made"])["repositories"][0]
out["described"] = {"mutability": d["imageTagMutability"], "scan": d["imageScanningConfiguration"]["scanOnPush"]}
arn = d["repositoryArn"]
out["arn"] = arn
out["registry_id"] = ecr.describe_registry()["registryId"]
out["proxy_endpoint"] = ecr.get_authorization_token()["authorizationData"][0]["proxyEndpoint"]

# Resource tags.
out["tags_made"] = ecr.list_tags_for_resource(resourceArn=arn)["tags"]
ecr.tag_resource(resourceArn=arn, tags=[{"Key": "env", "Value": "prod"}, {"Key": "owner", "Value": "hpc"}])
out["tags_added"] = ecr.list_tags_for_resource(resourceArn=arn)["tags"]
ecr.untag_resource(resourceArn=arn, tagKeys=["owner"])
out["tags_left"] = ecr.list_tags_for_resource(resourceArn=arn)["tags"]
out["reserved_tag"] = error(lambda: ecr.tag_resource(resourceArn=arn, tags=[{"Key": "aws:x", "Value": "1"}]))
out["too_many_tags"] = error(lambda: ecr.tag_resource(
    resourceArn=arn, tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)]))
out["foreign_arn"] = error(lambda: ecr.list_tags_for_resource(
    resourceArn="arn:aws:ecr:eu-west-1:000000000000:repository/team/made"))

# PutImage: a manifest already here, a new tag, layers missing, an immutable tag.
v1 = ecr.batch_get_image(repositoryName="team/app", imageIds=[{"imageTag": "v1"}])["images"][0]
v2 = ecr.batch_get_image(repositoryName="team/app", imageIds=[{"imageTag": "v2"}])["images"][0]
out["put_same"] = error(lambda: ecr.put_image(repositoryName="team/app", imageManifest=v1["imageManifest"],
                                              imageTag="v1"))
put = ecr.put_image(repositoryName="team/app", imageManifest=v1["imageManifest"], imageTag="stable",
                    imageManifestMediaType=v1["imageManifestMediaType"])["image"]
out["put"] = {"tag": put["imageId"]["imageTag"], "digest": put["imageId"]["imageDigest"],
              "same_digest": put["imageId"]["imageDigest"] == v1["imageId"]["imageDigest"]}
bogus = json.loads(v1["imageManifest"])
bogus["layers"][0]["digest"] = "sha256:" + "1" * 64
out["missing_layers"] = error(lambda: ecr.put_image(repositoryName="team/app", imageManifest=json.dumps(bogus),
                                                    imageTag="bogus"))
out["digest_mismatch"] = error(lambda: ecr.put_image(repositoryName="team/app", imageManifest=v1["imageManifest"],
                                                     imageDigest="sha256:" + "2" * 64))
m = ecr.put_image_tag_mutability(repositoryName="team/app", imageTagMutability="IMMUTABLE")
out["mutability_set"] = m["imageTagMutability"]
out["immutable"] = error(lambda: ecr.put_image(repositoryName="team/app", imageManifest=v2["imageManifest"],
                                               imageTag="v1"))
ecr.put_image_tag_mutability(repositoryName="team/app", imageTagMutability="MUTABLE")
moved = ecr.put_image(repositoryName="team/app", imageManifest=v2["imageManifest"], imageTag="stable")["image"]
out["moved"] = moved["imageId"]["imageDigest"] == v2["imageId"]["imageDigest"]

# Deleting as ECR does, in team/multi (images a, b, c): an index lists a and b.
def manifest_of(tag):
    return ecr.batch_get_image(repositoryName="team/multi", imageIds=[{"imageTag": tag}])["images"][0]


a, b, c = manifest_of("a"), manifest_of("b"), manifest_of("c")
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
    {"mediaType": m["imageManifestMediaType"], "digest": m["imageId"]["imageDigest"],
     "size": len(m["imageManifest"].encode()), "platform": {"architecture": arch, "os": "linux"}}
    for m, arch in [(a, "amd64"), (b, "arm64")]]}
ecr.put_image(repositoryName="team/multi", imageManifest=json.dumps(index), imageTag="multi")
gone = ecr.batch_delete_image(repositoryName="team/multi", imageIds=[{"imageDigest": a["imageId"]["imageDigest"]}])
out["listed_child"] = [f["failureCode"] for f in gone["failures"]] + [len(gone["imageIds"])]
gone = ecr.batch_delete_image(repositoryName="team/multi", imageIds=[{"imageTag": "a"}])
out["listed_child_tag"] = [i.get("imageTag") for i in gone["imageIds"]]
untagged = ecr.describe_images(repositoryName="team/multi", filter={"tagStatus": "UNTAGGED"})["imageDetails"]
out["untagged"] = [d["imageDigest"] == a["imageId"]["imageDigest"] for d in untagged]
tagged = ecr.describe_images(repositoryName="team/multi", filter={"tagStatus": "TAGGED"})["imageDetails"]
out["tagged"] = sorted(t for d in tagged for t in d.get("imageTags", []))
# ECR's IMMUTABLE forbids overwriting tags, not deleting images; removing the last tag deletes the image.
ecr.put_image_tag_mutability(repositoryName="team/multi", imageTagMutability="IMMUTABLE")
gone = ecr.batch_delete_image(repositoryName="team/multi", imageIds=[{"imageTag": "c"}])
out["last_tag"] = [i.get("imageTag") for i in gone["imageIds"]] + [f["failureCode"] for f in gone["failures"]]
out["last_tag_image"] = error(lambda: ecr.describe_images(
    repositoryName="team/multi", imageIds=[{"imageDigest": c["imageId"]["imageDigest"]}]))
out["media_type_mismatch"] = error(lambda: ecr.put_image(
    repositoryName="team/multi", imageManifest=b["imageManifest"], imageTag="d",
    imageManifestMediaType="application/vnd.docker.distribution.manifest.v2+json"))
out["sometimes"] = error(lambda: ecr.put_image_tag_mutability(repositoryName="team/multi",
                                                             imageTagMutability="SOMETIMES"))
out["not_json"] = error(lambda: ecr.put_image(repositoryName="team/multi", imageManifest="not json", imageTag="e"))
out["bare_name"] = error(lambda: ecr.create_repository(repositoryName="app"))
out["hidden_project"] = error(lambda: member.create_repository(repositoryName="secret/mine"))
out["other_registry"] = error(lambda: ecr.describe_repositories(registryId="123456789012"))
out["other_registries"] = error(lambda: ecr.get_authorization_token(registryIds=["123456789012"]))
out["request_id"] = ecr.describe_registry()["ResponseMetadata"].get("RequestId", "")

# Scan on push for one repository, and the registry's scanning rules.
s = ecr.put_image_scanning_configuration(repositoryName="team/app", imageScanningConfiguration={"scanOnPush": True})
out["scan_on_push"] = s["imageScanningConfiguration"]["scanOnPush"]
out["registry_scanning_default"] = ecr.get_registry_scanning_configuration()["scanningConfiguration"]
ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[
    {"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "team/reg*", "filterType": "WILDCARD"}]}])
got = ecr.get_registry_scanning_configuration()["scanningConfiguration"]
out["registry_scanning"] = got
out["bad_frequency"] = error(lambda: ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[
    {"scanFrequency": "HOURLY", "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}]}]))
out["member_scanning"] = error(lambda: member.put_registry_scanning_configuration(scanType="BASIC", rules=[]))

# Lifecycle policy previews: keep one v* image; boto3's waiter until the dry run ends.
policy = json.dumps({"rules": [{"rulePriority": 1, "description": "one v*", "selection": {
    "tagStatus": "tagged", "tagPrefixList": ["v"], "countType": "imageCountMoreThan", "countNumber": 1},
    "action": {"type": "expire"}}]})
out["no_preview"] = error(lambda: ecr.get_lifecycle_policy_preview(repositoryName="team/app"))
out["no_policy"] = error(lambda: ecr.start_lifecycle_policy_preview(repositoryName="team/app"))
started = ecr.start_lifecycle_policy_preview(repositoryName="team/app", lifecyclePolicyText=policy)
out["preview_started"] = started["status"]
ecr.get_waiter("lifecycle_policy_preview_complete").wait(repositoryName="team/app",
                                                         WaiterConfig={"Delay": 1, "MaxAttempts": 120})
p = ecr.get_lifecycle_policy_preview(repositoryName="team/app")
out["preview"] = {"status": p["status"], "expiring": p["summary"]["expiringImageTotalCount"],
                  "results": [(r["imageDigest"], r["action"]["type"], r["appliedRulePriority"])
                              for r in p["previewResults"]]}
out["v1_digest"] = v1["imageId"]["imageDigest"]
out["v2_digest"] = v2["imageId"]["imageDigest"]

# Replication to a registry endpoint, for repositories starting with team/rep.
config = {"rules": [{"destinations": [{"region": "eu-west-1", "registryId": "%012d" % int(endpoint_id)}],
                     "repositoryFilters": [{"filter": "team/rep", "filterType": "PREFIX_MATCH"}]}]}
ecr.put_replication_configuration(replicationConfiguration=config)
out["replication"] = ecr.describe_registry()["replicationConfiguration"]
out["replication_read_back"] = ecr.describe_registry()["replicationConfiguration"] == config
out["bad_destination"] = error(lambda: ecr.put_replication_configuration(replicationConfiguration={"rules": [
    {"destinations": [{"region": "eu-west-1", "registryId": "000000000099"}]}]}))

# Pull-through cache rules.
rule = ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="hub", upstreamRegistryUrl=upstream)
out["rule"] = {"prefix": rule["ecrRepositoryPrefix"], "url": rule["upstreamRegistryUrl"]}
out["rule_again"] = error(lambda: ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="hub",
                                                                     upstreamRegistryUrl=upstream))
out["rules"] = [r["ecrRepositoryPrefix"] for r in ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]]
out["rule_over_project"] = error(lambda: ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="team",
                                                                           upstreamRegistryUrl=upstream))
out["rule_missing"] = error(lambda: ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["nope"]))
out["member_rule"] = error(lambda: member.create_pull_through_cache_rule(ecrRepositoryPrefix="hub2",
                                                                         upstreamRegistryUrl=upstream))


def signed(region="ap-south-1", service="ecr", skew=0, token=None):
    """DescribeRegistry signed by botocore's own SigV4 signer, its clock moved by `skew` s."""
    req = AWSRequest(method="POST", url=endpoint + "/", data=b"{}", headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.DescribeRegistry"})
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(seconds=skew)
    real = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: now
    try:
        botocore.auth.SigV4Auth(Credentials(key, secret, token), service, region).add_auth(req)
    finally:
        botocore.auth.get_current_datetime = real
    http = urllib.request.Request(endpoint + "/", data=b"{}", headers=dict(req.headers), method="POST")
    try:
        with urllib.request.urlopen(http) as r:
            return [r.status, json.load(r).get("registryId")]
    except urllib.error.HTTPError as e:
        body = json.load(e)
        return [e.code, body["__type"], body["message"]]


out["signed_ok"] = signed()
out["signed_other_region"] = signed(region="eu-west-1")
out["signed_for_s3"] = signed(service="s3")
out["signed_late"] = signed(skew=-600)
out["signed_early"] = signed(skew=600)
out["signed_with_token"] = signed(token="FQoGZXIvYXdzE")
out["wrong_region_client"] = error(lambda: client(key, secret, region="eu-west-1").describe_registry())
print(json.dumps(out))
