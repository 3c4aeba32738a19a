# Least privilege. No project-wide role on the function's account except Firestore (conditioned
# on the ledger database); Cloud Run roles on each target job only; run.invoker on the function
# only. No owner/editor anywhere.

resource "google_service_account" "function" {
  project      = var.project_id
  account_id   = "${var.name}-fn"
  display_name = "triggers function (${var.name})"
  description  = "Runtime identity of the triggers function: runs the rules' Cloud Run jobs, writes the Firestore ledger."
}

resource "google_service_account" "trigger" {
  project      = var.project_id
  account_id   = "${var.name}-events"
  display_name = "triggers event delivery (${var.name})"
  description  = "Identity of the Eventarc triggers and Pub/Sub push subscriptions that call the triggers function."
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name}-sched"
  display_name = "triggers scheduler (${var.name})"
  description  = "OIDC identity of the Cloud Scheduler jobs that call the triggers function."
}

# The function: run each target job with overrides, on that job only.
resource "google_cloud_run_v2_job_iam_member" "executor" {
  for_each = local.target_jobs

  project  = regex(local.full_job_re, each.key)[0]
  location = regex(local.full_job_re, each.key)[1]
  name     = regex(local.full_job_re, each.key)[2]
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = google_service_account.function.member
}

# The function: list executions of each target job, to adopt a run after an ambiguous failure.
resource "google_cloud_run_v2_job_iam_member" "viewer" {
  for_each = var.job_viewer_role == null ? toset([]) : local.target_jobs

  project  = regex(local.full_job_re, each.key)[0]
  location = regex(local.full_job_re, each.key)[1]
  name     = regex(local.full_job_re, each.key)[2]
  role     = var.job_viewer_role
  member   = google_service_account.function.member
}

locals {
  # IAM condition of every datastore.user grant: the ledger's database, nothing else.
  ledger_database_condition = "resource.name == \"projects/${local.firestore_project}/databases/${var.firestore.database}\""
}

# The function: read and write the ledger, in its database only.
resource "google_project_iam_member" "firestore_user" {
  project = local.firestore_project
  role    = "roles/datastore.user"
  member  = google_service_account.function.member

  condition {
    title       = "${var.name}-ledger-database"
    description = "Only the triggers ledger database"
    expression  = local.ledger_database_condition
  }
}

# Event delivery and Scheduler: invoke this function (its Cloud Run service) only. With flow
# control, the function's own account too: Cloud Tasks calls the function back with a token of
# that account (tasks.tf).
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = merge(
    {
      events    = google_service_account.trigger.member
      scheduler = google_service_account.scheduler.member
    },
    { for name, member in { tasks = google_service_account.function.member } : name => member if local.flow_control },
  )

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value
}

# Eventarc: a direct-event trigger's service account must be able to receive events
# (project-level role). Only Cloud Storage triggers need it: Eventarc documents that routing
# direct events from Pub/Sub does not, so pubsub_delivery = "eventarc" alone grants nothing.
resource "google_project_iam_member" "trigger_event_receiver" {
  count = length(local.storage_sources) > 0 ? 1 : 0

  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.trigger.member
}

# Eventarc Cloud Storage triggers: the Cloud Storage service agent publishes to the Pub/Sub
# topics Eventarc creates (their names are not known in advance, hence project level).
# Read (which also makes Cloud Storage create its agent) only when there are storage triggers,
# and only once the Storage API is enabled.
data "google_storage_project_service_account" "gcs" {
  count   = length(local.storage_sources) > 0 ? 1 : 0
  project = var.project_id

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "gcs_pubsub_publisher" {
  count = length(local.storage_sources) > 0 ? 1 : 0

  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs[0].email_address}"
}

# IAM grants take effect after a propagation delay (typically under a minute, up to a few):
# on a first apply, Eventarc checks the storage agent's publisher grant while creating a
# storage trigger and fails if it has not propagated yet. The storage triggers wait this long
# after the grants are made (only then: later applies do not wait again).
resource "time_sleep" "storage_agent_grants" {
  count = length(local.storage_sources) > 0 ? 1 : 0

  create_duration = "90s"

  depends_on = [
    google_project_iam_member.gcs_pubsub_publisher,
    google_project_iam_member.trigger_event_receiver,
  ]
}
