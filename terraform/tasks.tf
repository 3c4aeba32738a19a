# Flow control (docs/flow-control.md): the rules with `limits:` or `batch:` launch through Cloud
# Tasks queues. The function enqueues one task per launch (or per batch) and the queue calls the
# function back (POST <function url>/_triggers/task, OIDC-signed by the function's own account)
# at the pace of its rate and concurrency. The queues are made here, from the rules; the
# function never creates one. Nothing in this file exists for rules without flow control.

locals {
  flow_control = length(local.task_queues) > 0

  # What the function needs to enqueue tasks that call it back (triggers/function/settings.py).
  # The audience is the function URL, one of the audiences the function already accepts.
  tasks_env = local.flow_control ? {
    TRIGGERS_TASKS_PROJECT         = var.project_id
    TRIGGERS_TASKS_LOCATION        = var.region
    TRIGGERS_TASK_TARGET_URL       = "${local.function_url}/_triggers/task"
    TRIGGERS_TASKS_SERVICE_ACCOUNT = google_service_account.function.email
    TRIGGERS_TASKS_AUDIENCE        = local.function_url
  } : {}
}

# One queue per queue id the rules use (rules.tf task_queues). Tasks are retried until they
# succeed: the task handler bounds waiting itself (limits.max_wait) and answers 200 when it
# gives up, so a queue-side attempt limit would only lose launches.
resource "google_cloud_tasks_queue" "rule" {
  for_each = local.task_queues

  project  = var.project_id
  location = var.region
  name     = each.key

  rate_limits {
    # null: the Cloud Tasks default (500/s), for queues of rules without a rate.
    max_dispatches_per_second = each.value.max_dispatches_per_second
    max_concurrent_dispatches = each.value.max_concurrent_dispatches
  }

  retry_config {
    max_attempts = -1
    min_backoff  = "1s"
    max_backoff  = "300s"
  }

  depends_on = [google_project_service.apis]
}

# The function: create tasks in the rules' queues (and only there).
resource "google_cloud_tasks_queue_iam_member" "function_enqueuer" {
  for_each = local.task_queues

  project  = var.project_id
  location = var.region
  name     = google_cloud_tasks_queue.rule[each.key].name
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.function.member
}

# A task that carries an OIDC token needs its creator to act as the token's account: the
# function signs its tasks' tokens as itself, so it may act as itself, and nothing more.
resource "google_service_account_iam_member" "function_signs_tasks" {
  count = length(local.task_queues) > 0 ? 1 : 0

  service_account_id = google_service_account.function.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.function.member
}
