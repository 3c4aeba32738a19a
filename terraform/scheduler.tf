# One Cloud Scheduler job per rule with a `schedule`, keyed by rule name. The job's name is the
# rule's `scheduler_job` (default: the rule name), which is what the rule matches ticks on. It
# calls the function's HTTP entry point directly with an OIDC token of the scheduler account.

locals {
  scheduler_region = coalesce(var.scheduler.region, var.region)
}

resource "google_cloud_scheduler_job" "rule" {
  for_each = local.scheduled_rules

  project          = var.project_id
  region           = local.scheduler_region
  name             = coalesce(each.value.scheduler_job, each.value.name)
  description      = "triggers rule ${each.key}"
  schedule         = each.value.schedule
  time_zone        = coalesce(each.value.time_zone, var.scheduler.default_time_zone)
  paused           = !each.value.enabled
  attempt_deadline = var.scheduler.attempt_deadline

  retry_config {
    retry_count          = var.scheduler.retry_count
    max_retry_duration   = var.scheduler.max_retry_duration
    min_backoff_duration = var.scheduler.min_backoff_duration
    max_backoff_duration = var.scheduler.max_backoff_duration
    max_doublings        = var.scheduler.max_doublings
  }

  http_target {
    uri         = google_cloudfunctions2_function.this.url
    http_method = "POST"

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = var.function.verify_oidc ? local.function_url : google_cloudfunctions2_function.this.url
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.invoker]
}
