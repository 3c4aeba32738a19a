# The rules file, read once. Every per-rule or per-source resource of this module is derived from
# the maps below, keyed by rule name (or by the event source several rules share), never by list
# index, so that adding, removing or reordering rules only touches the resources concerned.
#
# Field access style (checked by tests/unit/test_terraform.py against RuleSpec.model_fields):
# required rule fields are read as `rule.<field>`, optional ones as `lookup(rule, "<field>", ...)`,
# top-level fields as `lookup(local.rules_doc, "<field>", ...)`. Nothing else reads the raw file.

locals {
  # `${NAME}` / `${NAME:-default}` are expanded by the function at load time. The module expands
  # the two it also sets in the function's environment (TRIGGERS_PROJECT, TRIGGERS_REGION), and
  # any other `${NAME:-default}` to its default, so that both read the same values.
  rules_text = replace(
    replace(
      replace(
        file(var.rules_file),
        "/\\$\\{TRIGGERS_PROJECT(?::-[^}]*)?\\}/", var.project_id
      ),
      "/\\$\\{TRIGGERS_REGION(?::-[^}]*)?\\}/", var.region
    ),
    "/\\$\\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\\}/", "$1"
  )
  rules_doc = yamldecode(local.rules_text)

  file_project = lookup(local.rules_doc, "project", null)
  file_region  = lookup(local.rules_doc, "region", null)

  # `on:` shorthands -> CloudEvent types (triggers/rules/schema.py ON_SHORTHANDS).
  storage_types = {
    "storage.finalized"       = "google.cloud.storage.object.v1.finalized"
    "storage.deleted"         = "google.cloud.storage.object.v1.deleted"
    "storage.archived"        = "google.cloud.storage.object.v1.archived"
    "storage.metadataUpdated" = "google.cloud.storage.object.v1.metadataUpdated"
  }
  on_types = merge(
    { for k, v in local.storage_types : k => [v] },
    {
      pubsub    = ["google.cloud.pubsub.topic.v1.messagePublished"]
      storage   = values(local.storage_types)
      scheduler = ["google.cloud.scheduler.job.v1.executed"]
    },
  )

  yaml11_on_key = "true"

  full_job_re   = "^projects/([^/]+)/locations/([^/]+)/jobs/([^/]+)$"
  full_topic_re = "^projects/[^/]+/topics/[^/]+$"

  # name => normalised rule. A duplicate rule name fails the plan ("Duplicate object key").
  rules = {
    for rule in lookup(local.rules_doc, "rules", []) : rule.name => {
      name    = rule.name
      enabled = lookup(rule, "enabled", true)
      # yamldecode resolves scalars as YAML 1.1 does, so an unquoted `on:` key arrives as "true"
      # (the function reads YAML 1.2, where it is "on"). Accept both spellings.
      on      = flatten([lookup(rule, "on", lookup(rule, local.yaml11_on_key, []))])
      project = coalesce(lookup(rule, "project", null), local.file_project, var.project_id)
      region  = coalesce(lookup(rule, "region", null), local.file_region, var.region)
      job = (
        length(regexall(local.full_job_re, rule.job)) > 0
        ? rule.job
        : format(
          "projects/%s/locations/%s/jobs/%s",
          coalesce(lookup(rule, "project", null), local.file_project, var.project_id),
          coalesce(lookup(rule, "region", null), local.file_region, var.region),
          rule.job,
        )
      )
      topic         = lookup(rule, "topic", null)
      subscription  = lookup(rule, "subscription", null)
      bucket        = lookup(rule, "bucket", null)
      schedule      = lookup(rule, "schedule", null)
      time_zone     = lookup(rule, "time_zone", null)
      scheduler_job = lookup(rule, "scheduler_job", null)
      system        = lookup(rule, "system", "cloudrun")
    }
  }

  enabled_rules = { for name, r in local.rules : name => r if r.enabled }

  # Regions of the jobs run through the Cloud Run Admin API v1 (system cloudrun-v1): its
  # execution names carry no region, so the reconciler is told where to ask.
  cloud_run_v1_regions = sort(distinct([
    for r in values(local.rules) : split("/", r.job)[3] if r.system == "cloudrun-v1"
  ]))

  # Every Cloud Run job any rule targets (full names; several rules may share one job).
  target_jobs = toset([for r in values(local.rules) : r.job])

  # Storage rules -> one Eventarc trigger per (bucket, event type), shared by the rules that
  # watch it: one delivery per event, which the function routes to every matching rule.
  storage_sources = merge([
    for name, r in local.enabled_rules : {
      for t in distinct(flatten([for o in r.on : lookup(local.on_types, o, []) if startswith(o, "storage")])) :
      "${r.bucket}/${t}" => { bucket = r.bucket, type = t }
    } if r.bucket != null
  ]...)

  # Pub/Sub rules -> one delivery (Eventarc trigger or push subscription) per topic.
  pubsub_topics = toset([
    for name, r in local.enabled_rules : (
      length(regexall(local.full_topic_re, r.topic)) > 0 ? r.topic : "projects/${r.project}/topics/${r.topic}"
    ) if contains(r.on, "pubsub") && r.topic != null
  ])

  # Scheduler rules that own their Scheduler job (a `schedule`), keyed by rule name.
  scheduled_rules = { for name, r in local.rules : name => r if r.schedule != null }

  # Rules whose events this module cannot subscribe to (kept for the outputs / README).
  unwired_rules = sort([
    for name, r in local.enabled_rules : name if !(
      (r.bucket != null && anytrue([for o in r.on : startswith(o, "storage")])) ||
      (r.topic != null && contains(r.on, "pubsub")) ||
      r.schedule != null
    )
  ])

  firestore_project = coalesce(var.firestore.project, var.project_id)
}
