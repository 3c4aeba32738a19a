# The function's source: the `triggers` package, the rules file (as rules.yaml) and its
# pre-validated artifact if there is one, triggers/main.py as the root main.py, and a
# requirements.txt. One archive, so the rules the
# function routes on are the very rules this module derived its resources from. The reconciler
# (reconcile.tf) is deployed from the same archive with entry point handle_reconcile.

locals {
  package_files = fileset(var.source_dir, "triggers/**/*.py")

  function_url = "https://${var.region}-${var.project_id}.cloudfunctions.net/${var.name}"

  # The audiences callers' OIDC tokens carry (the function checks them with verify_oidc):
  # Scheduler jobs and push subscriptions use function_url; Eventarc's Cloud Run destination
  # uses the service's run.app URL, which cannot be read here without a cycle (the function
  # would depend on itself): its deterministic form, and its hash form as a pattern (each `*`
  # one run of [a-z0-9]: https://NAME-HASH-REGIONCODE.a.run.app). Callers are still limited
  # to the module's two delivery accounts (TRIGGERS_OIDC_ALLOWED_EMAILS).
  oidc_audiences = [
    local.function_url,
    "https://${var.name}-${data.google_project.this.number}.${var.region}.run.app",
    "https://${var.name}-*-*.a.run.app",
  ]

  # Settings of every function of this module (the event function and the reconciler): the same
  # rules, the same ledger. The module's own settings win over var.function.environment.
  shared_env = merge(
    var.function.environment,
    {
      TRIGGERS_RULES                = "rules.yaml"
      TRIGGERS_LEDGER               = "firestore"
      TRIGGERS_FIRESTORE_PROJECT    = local.firestore_project
      TRIGGERS_FIRESTORE_DATABASE   = var.firestore.database
      TRIGGERS_FIRESTORE_COLLECTION = var.firestore.collection
      TRIGGERS_PROJECT              = var.project_id
      TRIGGERS_REGION               = var.region
      TRIGGERS_LEASE_SECONDS        = tostring(var.function.timeout_seconds)
      TRIGGERS_CLOUD_RUN_V1_REGIONS = jsonencode(local.cloud_run_v1_regions)
    },
  )

  # The event function also publishes what it rejects (docs/deadletters.md) and, with
  # verify_oidc, checks its callers' tokens itself.
  function_env = merge(
    local.shared_env,
    local.dead_letter ? {
      TRIGGERS_DEAD_LETTER_TOPIC = one(google_pubsub_topic.dead_letter[*].id)
    } : {},
    var.function.verify_oidc ? {
      TRIGGERS_OIDC_AUDIENCE       = jsonencode(local.oidc_audiences)
      TRIGGERS_OIDC_ALLOWED_EMAILS = jsonencode(local.oidc_allowed_emails)
    } : {},
    local.tasks_env,
  )

  # Who may call the function: the delivery accounts, and the function's own account, which
  # signs the tokens of its Cloud Tasks callbacks (tasks.tf), when a rule uses flow control.
  oidc_allowed_emails = concat(
    [google_service_account.trigger.email, google_service_account.scheduler.email],
    local.flow_control ? [google_service_account.function.email] : [],
  )
}

# A managed archive_file (not the data source): the zip is written when the plan is applied,
# not when it is made, so a saved plan (`terraform plan -out`) applies on another machine or
# in a later CI job, where a data source's plan-time file would not exist.
resource "archive_file" "source" {
  type        = "zip"
  output_path = "${path.root}/.terraform/${var.name}-function-source.zip"

  dynamic "source" {
    for_each = local.package_files
    content {
      content  = file("${var.source_dir}/${source.value}")
      filename = source.value
    }
  }

  source {
    content  = file(var.rules_file)
    filename = "rules.yaml"
  }

  # The root main.py is triggers/main.py itself: functions-framework loads it by path, and then
  # it builds the app while the instance starts (a broken rules file fails the deployment, not
  # the first event) with the collector paused (docs/performance.md).
  source {
    content  = file("${var.source_dir}/triggers/main.py")
    filename = "main.py"
  }

  # The pre-validated rules, when `triggers compile` wrote them next to the rules file: the
  # instance then starts without validating (docs/deploy.md). A stale one is ignored at start.
  dynamic "source" {
    for_each = fileexists("${var.rules_file}.compiled.json") ? [1] : []
    content {
      content  = file("${var.rules_file}.compiled.json")
      filename = "rules.yaml.compiled.json"
    }
  }

  source {
    content  = "${join("\n", var.requirements)}\n"
    filename = "requirements.txt"
  }
}

resource "google_storage_bucket" "source" {
  count = var.source_bucket == null ? 1 : 0

  project                     = var.project_id
  name                        = "${var.project_id}-${var.name}-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = var.labels

  versioning {
    enabled = true
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 3
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_object" "source" {
  # The name changes with the content, so a changed rule or package redeploys the function.
  name   = "${var.name}/source-${archive_file.source.output_md5}.zip"
  bucket = var.source_bucket == null ? google_storage_bucket.source[0].name : var.source_bucket
  source = archive_file.source.output_path
}

resource "google_cloudfunctions2_function" "this" {
  # checkov:skip=CKV_GCP_124: Cloud Scheduler HTTP targets and Pub/Sub push are not "internal" callers, so ALLOW_ALL is the default; every call still needs roles/run.invoker (no allUsers binding), and function.ingress_settings can narrow it.
  project     = var.project_id
  location    = var.region
  name        = var.name
  description = "triggers: Pub/Sub, Scheduler and Cloud Storage events -> Cloud Run job runs"
  labels      = var.labels

  build_config {
    runtime         = var.function.runtime
    entry_point     = "handle_http"
    service_account = var.function.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket_object.source.bucket
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = var.function.available_memory
    available_cpu                    = var.function.available_cpu
    timeout_seconds                  = var.function.timeout_seconds
    min_instance_count               = var.function.min_instance_count
    max_instance_count               = var.function.max_instance_count
    max_instance_request_concurrency = var.function.concurrency
    ingress_settings                 = var.function.ingress_settings
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function.email
    environment_variables            = local.function_env
  }

  lifecycle {
    precondition {
      # triggers/function/deadletter.py imports google.cloud.pubsub_v1 when TRIGGERS_DEAD_LETTER_TOPIC is
      # set: without it the function fails at start.
      condition     = !local.dead_letter || anytrue([for r in var.requirements : can(regex("(?i)^\\s*google[-_.]cloud[-_.]pubsub([^a-z0-9_.-]|$)", r))])
      error_message = "dead_letter.enabled sets TRIGGERS_DEAD_LETTER_TOPIC, which needs google-cloud-pubsub in var.requirements."
    }
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.firestore_user,
    google_pubsub_topic_iam_member.function_publisher,
  ]
}
