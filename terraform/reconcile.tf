# The reconciler (triggers/ops/reconcile.py): a second function, deployed from the same source
# archive with entry point handle_reconcile and the same rules and ledger settings
# (local.shared_env), that a Cloud Scheduler job calls every `var.reconcile.schedule`. Each call
# asks Cloud Run (executions.get) what became of every `launched` ledger record and records
# succeeded / failed / cancelled with a compare-and-set. Idempotent: an overlapping or retried
# pass only finds conflicts or nothing left to do.
#
# Its own identities, each with only what it needs:
#   <name>-recon   runtime: var.reconcile.job_role (roles/run.viewer: run.executions.get/list)
#                  on each target job; roles/datastore.user on the ledger database only
#   <name>-rsched  the Scheduler job's OIDC identity: roles/run.invoker on the reconciler only
# It does not get the event function's rights (run jobs, publish dead letters) nor they its.

locals {
  reconcile_enabled  = var.reconcile.enabled
  reconcile_name     = "${var.name}-reconcile"
  reconcile_job_name = "${var.name}-reconcile"
}

resource "google_service_account" "reconcile" {
  count = local.reconcile_enabled ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name}-recon"
  display_name = "triggers reconciler (${var.name})"
  description  = "Runtime identity of the triggers reconciler: reads executions of the rules' Cloud Run jobs, updates the Firestore ledger."
}

resource "google_service_account" "reconcile_scheduler" {
  count = local.reconcile_enabled ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name}-rsched"
  display_name = "triggers reconcile scheduler (${var.name})"
  description  = "OIDC identity of the Cloud Scheduler job that calls the triggers reconciler."
}

resource "google_cloudfunctions2_function" "reconcile" {
  # checkov:skip=CKV_GCP_124: the reconciler's only caller is a Cloud Scheduler HTTP target, which is not an "internal" caller, so ALLOW_ALL is the default; every call still needs roles/run.invoker, granted to the reconcile scheduler account only (no allUsers binding).
  count = local.reconcile_enabled ? 1 : 0

  project     = var.project_id
  location    = var.region
  name        = local.reconcile_name
  description = "triggers reconciler: launched ledger records -> succeeded / failed / cancelled"
  labels      = var.labels

  build_config {
    runtime         = var.function.runtime
    entry_point     = "handle_reconcile"
    service_account = var.function.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket_object.source.bucket
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = var.reconcile.available_memory
    available_cpu                    = var.reconcile.available_cpu
    timeout_seconds                  = var.reconcile.timeout_seconds
    min_instance_count               = 0
    max_instance_count               = var.reconcile.max_instance_count
    max_instance_request_concurrency = 1
    ingress_settings                 = var.function.ingress_settings
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.reconcile[0].email
    # The same rules and ledger as the event function. No TRIGGERS_DEAD_LETTER_TOPIC (it
    # rejects no events) and no TRIGGERS_OIDC_* (handle_reconcile does not check tokens:
    # Cloud Run IAM admits only the reconcile scheduler account).
    environment_variables = local.shared_env
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.reconcile_firestore_user,
  ]
}

# Read the executions of each job the rules name, on that job only (executions.get; the role
# also holds run.executions.list). Same keys as the event function's grants (local.target_jobs).
resource "google_cloud_run_v2_job_iam_member" "reconcile_viewer" {
  for_each = local.reconcile_enabled ? local.target_jobs : toset([])

  project  = regex(local.full_job_re, each.key)[0]
  location = regex(local.full_job_re, each.key)[1]
  name     = regex(local.full_job_re, each.key)[2]
  role     = var.reconcile.job_role
  member   = google_service_account.reconcile[0].member
}

# Read and update ledger records, in the ledger's database only (as the event function).
resource "google_project_iam_member" "reconcile_firestore_user" {
  count = local.reconcile_enabled ? 1 : 0

  project = local.firestore_project
  role    = "roles/datastore.user"
  member  = google_service_account.reconcile[0].member

  condition {
    title       = "${var.name}-reconcile-ledger-database"
    description = "Only the triggers ledger database"
    expression  = local.ledger_database_condition
  }
}

# The Scheduler job's identity may invoke the reconciler, and nothing else.
resource "google_cloud_run_v2_service_iam_member" "reconcile_invoker" {
  count = local.reconcile_enabled ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.reconcile[0].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.reconcile_scheduler[0].member
}

resource "google_cloud_scheduler_job" "reconcile" {
  count = local.reconcile_enabled ? 1 : 0

  project          = var.project_id
  region           = local.scheduler_region
  name             = local.reconcile_job_name
  description      = "triggers reconciler (${var.name}): record the outcome of launched runs"
  schedule         = var.reconcile.schedule
  time_zone        = var.reconcile.time_zone
  paused           = var.reconcile.paused
  attempt_deadline = var.reconcile.attempt_deadline

  # handle_reconcile answers 503 when the ledger cannot be listed: retried here, else next tick.
  retry_config {
    retry_count          = var.reconcile.retry_count
    max_retry_duration   = var.reconcile.max_retry_duration
    min_backoff_duration = var.reconcile.min_backoff_duration
    max_backoff_duration = var.reconcile.max_backoff_duration
    max_doublings        = var.reconcile.max_doublings
  }

  http_target {
    uri         = google_cloudfunctions2_function.reconcile[0].url
    http_method = "POST"

    oidc_token {
      service_account_email = google_service_account.reconcile_scheduler[0].email
      audience              = google_cloudfunctions2_function.reconcile[0].url
    }
  }

  lifecycle {
    precondition {
      # Rules' Scheduler jobs live in the same region; a rule whose job had this name would
      # otherwise fight this job (and match its ticks).
      condition     = !contains([for r in values(local.scheduled_rules) : coalesce(r.scheduler_job, r.name)], local.reconcile_job_name)
      error_message = "A rule's Scheduler job is named ${local.reconcile_job_name}, the reconciler's job: rename the rule (or its scheduler_job) or the module (var.name)."
    }
  }

  # The first call needs its invoker grant and the ledger's (status, created_at) index.
  depends_on = [
    google_cloud_run_v2_service_iam_member.reconcile_invoker,
    google_firestore_index.ledger,
  ]
}
