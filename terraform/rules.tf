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
  # `$${` is a literal `${` for the function (triggers/rules/yamlsource.py): it is set aside
  # before the expansion and written back as `${` after it, as the function does.
  literal_marker = "__triggers_literal_dollar_brace__"
  dollar_brace   = format("%s{", "$") # `${` spelled without HCL's own `$${` escape
  rules_text = replace(
    replace(
      replace(
        replace(
          replace(file(var.rules_file), "/\\$\\$\\{/", local.literal_marker),
          "/\\$\\{TRIGGERS_PROJECT(?::-[^}]*)?\\}/", var.project_id
        ),
        "/\\$\\{TRIGGERS_REGION(?::-[^}]*)?\\}/", var.region
      ),
      "/\\$\\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\\}/", "$1"
    ),
    local.literal_marker, local.dollar_brace
  )
  rules_doc = yamldecode(local.rules_text)

  file_project = lookup(local.rules_doc, "project", null)
  file_region  = lookup(local.rules_doc, "region", null)
  # The file's `limits:`: the default of every `limits:` field a rule does not set.
  file_limits = lookup(local.rules_doc, "limits", null)

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

  pubsub_type = "google.cloud.pubsub.topic.v1.messagePublished"

  yaml11_on_key = "true"

  full_job_re          = "^projects/([^/]+)/locations/([^/]+)/jobs/([^/]+)$"
  full_topic_re        = "^projects/[^/]+/topics/[^/]+$"
  full_subscription_re = "^projects/([^/]+)/subscriptions/([^/]+)$"

  # name => normalised rule. A duplicate rule name fails the plan ("Duplicate object key").
  rules = {
    for rule in lookup(local.rules_doc, "rules", []) : rule.name => {
      name    = rule.name
      enabled = lookup(rule, "enabled", true)
      # yamldecode resolves scalars as YAML 1.1 does, so an unquoted `on:` key arrives as "true"
      # (the function reads YAML 1.2, where it is "on"). Accept both spellings.
      on      = flatten([lookup(rule, "on", lookup(rule, local.yaml11_on_key, []))])
      # `on:` as CloudEvent types: a shorthand stands for its types, a full type for itself
      # (the README allows both), so deliveries are decided on types, never on spellings.
      types = distinct(flatten([
        for o in flatten([lookup(rule, "on", lookup(rule, local.yaml11_on_key, []))]) :
        lookup(local.on_types, o, [o])
      ]))
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
      # Flow control: a rule launches through a Cloud Tasks queue when it has `limits:` or
      # `batch:`, or the file has `limits:`. Its limits are the file's merged with its own, field
      # by field (its own win), as the function's loader merges them (triggers/rules/flow.py).
      # merge() skips null arguments; the leading {} keeps the result an object.
      flow = (
        local.file_limits != null || lookup(rule, "limits", null) != null ||
        lookup(rule, "batch", null) != null
      )
      limits  = merge({}, local.file_limits, lookup(rule, "limits", null))
      batched = lookup(rule, "batch", null) != null
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
      for t in r.types : "${r.bucket}/${t}" => { bucket = r.bucket, type = t }
      if contains(values(local.storage_types), t)
    } if r.bucket != null
  ]...)

  # Pub/Sub rules, with their topic and subscription as full names (the function's rules
  # loader qualifies short names with the rule's or the file's project the same way).
  pubsub_rules = {
    for name, r in local.enabled_rules : name => {
      topic = r.topic == null ? null : (
        length(regexall(local.full_topic_re, r.topic)) > 0 ? r.topic : "projects/${r.project}/topics/${r.topic}"
      )
      subscription = r.subscription == null ? null : (
        length(regexall(local.full_subscription_re, r.subscription)) > 0 ? r.subscription : "projects/${r.project}/subscriptions/${r.subscription}"
      )
    } if contains(r.types, local.pubsub_type)
  }

  # Rules scoped by `topic` only -> one delivery (Eventarc trigger or push subscription) per
  # topic. A rule that also names a `subscription` matches only deliveries through that one.
  pubsub_topics = toset([
    for name, p in local.pubsub_rules : p.topic if p.topic != null && p.subscription == null
  ])

  # Rules scoped by `subscription` (with the `topic` to create it on) -> that very
  # subscription, a push subscription whatever pubsub_delivery says (an Eventarc trigger's
  # subscription has a name Eventarc chooses). Keyed by its full name; its topic(s) listed so
  # that two rules naming it on different topics fail the plan (precondition in triggers.tf).
  named_subscriptions = {
    for name, p in local.pubsub_rules : p.subscription => p.topic...
    if p.subscription != null && p.topic != null
  }

  # Scheduler rules that own their Scheduler job (a `schedule`), keyed by rule name.
  scheduled_rules = { for name, r in local.rules : name => r if r.schedule != null }

  # Rules whose events this module cannot subscribe to (kept for the outputs / README): no
  # bucket, no schedule, and a Pub/Sub scope the module cannot create a delivery for (a
  # `subscription` without a `topic`: the module cannot create it, it must exist already).
  unwired_rules = sort([
    for name, r in local.enabled_rules : name if !(
      (r.bucket != null && length(setintersection(r.types, values(local.storage_types))) > 0) ||
      (contains(keys(local.pubsub_rules), name) && r.topic != null) ||
      r.schedule != null
    )
  ])

  # Flow control: name => the rule's queue id and what its queue needs from it. The default
  # queue id is `triggers-<rule name>` with `_` as `-` (queue ids cannot hold `_`): what
  # triggers/flow/naming.py default_queue_id gives for every valid rule name (its cut-and-hash
  # for names past 100 characters never applies to a rule name, at most 63).
  flow_rules = {
    for name, r in local.rules : name => {
      name        = name
      queue       = coalesce(lookup(r.limits, "queue", null), "triggers-${replace(name, "_", "-")}")
      rate        = lookup(r.limits, "rate", null)
      max_running = lookup(r.limits, "max_running", null)
    } if r.flow
  }

  # `rate:` units, in seconds (triggers/rules/schema_flow.py RATE_UNITS).
  rate_units = { s = 1, sec = 1, second = 1, min = 60, minute = 60, h = 3600, hour = 3600 }
  rate_re    = "^\\s*([0-9]+)\\s*/\\s*([a-z]+)\\s*$"

  # One Cloud Tasks queue per queue id the rules use, keyed by that id. Rules sharing a queue
  # share its rate (the loader refuses rules that disagree), so the first one's is the queue's.
  # A queue of a rule with max_running dispatches one task at a time: the task handler counts the
  # running executions then launches, and two of those at once would both see room for one.
  task_queues = {
    for queue, flows in { for name, f in local.flow_rules : f.queue => f... } : queue => {
      rules = [for f in flows : f.name]
      max_dispatches_per_second = (
        flows[0].rate == null ? null :
        tonumber(regex(local.rate_re, flows[0].rate)[0]) / local.rate_units[regex(local.rate_re, flows[0].rate)[1]]
      )
      max_concurrent_dispatches = anytrue([for f in flows : f.max_running != null]) ? 1 : null
    }
  }

  firestore_project = coalesce(var.firestore.project, var.project_id)
}
