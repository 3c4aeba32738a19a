# Metrics per rule, alerts and a dashboard, all from what the functions already log.
#
# The function and the reconciler write one JSON line per decision to stdout
# (triggers/function/logs.py); Cloud Logging turns `logging.googleapis.com/labels` into the
# entry's labels. Each line this module counts carries `labels.kind`:
#   decision        one per (event, matched rule): labels rule, outcome (launched, duplicate,
#                   rejected, retry), reason         (triggers/function/app.py)
#   input_rejected  a request that is not an event: labels outcome=rejected, reason
#   dead_letter     a rejection published to the dead-letter topic: labels rule,
#                   dead_letter_reason                (triggers/function/deadletter.py)
#   execution       the reconciler saw an execution end: labels rule, outcome (succeeded,
#                   failed, cancelled), reason      (triggers/ops/reconcile.py)
#   reconcile_error a record (or a whole pass) the reconciler could not reconcile
# Log-based metrics are computed by Cloud Logging on ingestion, so nothing is added to the
# function's cold start or request path. tests/unit/test_monitoring_filters.py runs these
# filters over lines captured from the real App: keep the two in step.

locals {
  monitoring        = var.monitoring.enabled
  monitoring_alerts = local.monitoring && var.monitoring.alerts
  metric_prefix     = coalesce(var.monitoring.metric_prefix, var.name)

  # Only the two functions' own log entries (gen2 functions log as Cloud Run services).
  monitoring_scope = "resource.type=\"cloud_run_revision\" AND (resource.labels.service_name=\"${var.name}\" OR resource.labels.service_name=\"${local.reconcile_name}\")"

  # Reasons are free text (a service's message): keep the part before the first ':' and at most
  # 60 characters, so that one noisy error does not create a time series per message.
  reason_extractor = "REGEXP_EXTRACT(labels.reason, \"^([^:]{1,60})\")"

  # metric id => what it counts, its filter (within monitoring_scope) and its labels.
  log_metrics = {
    matched = {
      description = "Rules an event matched (one per event and rule), by outcome."
      filter      = "labels.kind=\"decision\""
      labels = {
        rule    = "EXTRACT(labels.rule)"
        outcome = "EXTRACT(labels.outcome)"
      }
    }
    launched = {
      description = "Executions launched, per rule."
      filter      = "labels.kind=\"decision\" AND labels.outcome=\"launched\""
      labels      = { rule = "EXTRACT(labels.rule)" }
    }
    duplicate = {
      description = "Redeliveries answered from the ledger without a second launch, per rule."
      filter      = "labels.kind=\"decision\" AND labels.outcome=\"duplicate\""
      labels      = { rule = "EXTRACT(labels.rule)" }
    }
    rejected = {
      description = "Rejections for good, per rule and reason (rule is empty for a request that is not an event)."
      filter      = "(labels.kind=\"decision\" AND labels.outcome=\"rejected\") OR labels.kind=\"input_rejected\""
      labels = {
        rule   = "EXTRACT(labels.rule)"
        reason = local.reason_extractor
      }
    }
    retried = {
      description = "Events answered 503 for a rule so that the sender retries, per rule and reason."
      filter      = "labels.kind=\"decision\" AND labels.outcome=\"retry\""
      labels = {
        rule   = "EXTRACT(labels.rule)"
        reason = local.reason_extractor
      }
    }
    dead_lettered = {
      description = "Rejections published to the dead-letter topic, per rule and reason."
      filter      = "labels.kind=\"dead_letter\""
      labels = {
        rule   = "EXTRACT(labels.rule)"
        reason = "REGEXP_EXTRACT(labels.dead_letter_reason, \"^([^:]{1,60})\")"
      }
    }
    executions = {
      description = "Executions the reconciler saw end, per rule and outcome (succeeded, failed, cancelled)."
      filter      = "labels.kind=\"execution\""
      labels = {
        rule    = "EXTRACT(labels.rule)"
        outcome = "EXTRACT(labels.outcome)"
        reason  = local.reason_extractor
      }
    }
    reconcile_errors = {
      description = "Records (or whole passes) the reconciler could not reconcile."
      filter      = "labels.kind=\"reconcile_error\""
      labels      = { rule = "EXTRACT(labels.rule)" }
    }
  }

  metric_types = {
    for id, metric in google_logging_metric.rule : id => "logging.googleapis.com/user/${metric.name}"
  }
}

resource "google_logging_metric" "rule" {
  for_each = { for id, metric in local.log_metrics : id => metric if local.monitoring }

  project     = var.project_id
  name        = "${local.metric_prefix}/${each.key}"
  description = each.value.description
  filter      = "${local.monitoring_scope} AND (${each.value.filter})"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "triggers ${var.name}: ${replace(each.key, "_", " ")}"

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }

  label_extractors = each.value.labels

  depends_on = [google_project_service.apis]
}

# -- alerts ------------------------------------------------------------------------------------

locals {
  # alert id => its condition(s) over the metrics above; each fires when a count over
  # var.monitoring.alert_window exceeds its threshold.
  count_alerts = {
    dead_letters = {
      enabled = true
      name    = "dead letters arriving"
      doc     = "The function rejected requests for good and dead-lettered them. See them with `triggers replay --from-topic <dead-letter subscription> --dry-run` (docs/deadletters.md); fix the rule or the sender, then replay them."
      conditions = {
        dead_lettered = { metric = "dead_lettered", label = null, threshold = 0 }
      }
    }
    rejected_or_retried = {
      enabled = true
      name    = "rejected or retried events"
      doc     = "Events were rejected for good or answered 503 (a dependency failed) more often than the thresholds allow. The `reason` label says why; see docs/operations.md."
      conditions = {
        rejected = { metric = "rejected", label = null, threshold = var.monitoring.rejected_threshold }
        retried  = { metric = "retried", label = null, threshold = var.monitoring.retried_threshold }
      }
    }
    failed_executions = {
      enabled = var.reconcile.enabled
      name    = "failed executions"
      doc     = "The reconciler saw executions of the rules' jobs fail. `triggers runs --status failed` lists them, `triggers show` gives one with its log URI."
      conditions = {
        failed = { metric = "executions", label = "failed", threshold = var.monitoring.failed_executions_threshold }
      }
    }
    reconcile_errors = {
      enabled = var.reconcile.enabled
      name    = "reconciler errors"
      doc     = "The reconciler could not reconcile records (or could not list the ledger). Its logs say which and why."
      conditions = {
        errors = { metric = "reconcile_errors", label = null, threshold = 0 }
      }
    }
  }
}

resource "google_monitoring_alert_policy" "count" {
  for_each = { for id, alert in local.count_alerts : id => alert if local.monitoring_alerts && alert.enabled }

  project               = var.project_id
  display_name          = "triggers ${var.name}: ${each.value.name}"
  combiner              = "OR"
  notification_channels = var.monitoring.notification_channels
  user_labels           = var.labels

  documentation {
    content   = each.value.doc
    mime_type = "text/markdown"
  }

  dynamic "conditions" {
    for_each = each.value.conditions
    content {
      display_name = "${conditions.value.metric} above ${conditions.value.threshold} per ${var.monitoring.alert_window}"

      condition_threshold {
        filter          = "metric.type=\"${local.metric_types[conditions.value.metric]}\" AND resource.type=\"cloud_run_revision\"${conditions.value.label == null ? "" : " AND metric.label.outcome=\"${conditions.value.label}\""}"
        comparison      = "COMPARISON_GT"
        threshold_value = conditions.value.threshold
        duration        = "0s"

        aggregations {
          alignment_period     = var.monitoring.alert_window
          per_series_aligner   = "ALIGN_DELTA"
          cross_series_reducer = "REDUCE_SUM"
          group_by_fields      = ["metric.label.rule"]
        }

        trigger {
          count = 1
        }
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }
}

resource "google_monitoring_alert_policy" "dead_letter_backlog" {
  count = local.monitoring_alerts && local.dead_letter ? 1 : 0

  project               = var.project_id
  display_name          = "triggers ${var.name}: dead-letter backlog"
  combiner              = "OR"
  notification_channels = var.monitoring.notification_channels
  user_labels           = var.labels

  documentation {
    content   = "Messages wait in the dead-letter subscription ${var.name}-dead-letter. Fix the cause, then `triggers replay --from-topic` them (docs/operations.md, docs/deadletters.md); what is replayed successfully is acknowledged and leaves the backlog."
    mime_type = "text/markdown"
  }

  conditions {
    display_name = "undelivered dead letters above ${var.monitoring.dead_letter_backlog_threshold} for ${var.monitoring.dead_letter_backlog_duration}"

    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=\"${google_pubsub_subscription.dead_letter[0].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.monitoring.dead_letter_backlog_threshold
      duration        = var.monitoring.dead_letter_backlog_duration

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }
}

# -- dashboard ---------------------------------------------------------------------------------

locals {
  # metric id => (title, the label its lines are split by)
  dashboard_charts = {
    matched          = ["Matched, by outcome", "metric.label.outcome"]
    launched         = ["Launched, by rule", "metric.label.rule"]
    duplicate        = ["Duplicates, by rule", "metric.label.rule"]
    rejected         = ["Rejected, by reason", "metric.label.reason"]
    retried          = ["Retried, by reason", "metric.label.reason"]
    dead_lettered    = ["Dead-lettered, by rule", "metric.label.rule"]
    executions       = ["Executions ended, by outcome", "metric.label.outcome"]
    reconcile_errors = ["Reconciler errors", "metric.label.rule"]
  }
}

resource "google_monitoring_dashboard" "this" {
  count = local.monitoring && var.monitoring.dashboard ? 1 : 0

  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "triggers ${var.name}"
    mosaicLayout = {
      columns = 12
      tiles = [
        for index, id in keys(local.dashboard_charts) : {
          xPos   = (index % 2) * 6
          yPos   = floor(index / 2) * 4
          width  = 6
          height = 4
          widget = {
            title = local.dashboard_charts[id][0]
            xyChart = {
              dataSets = [{
                plotType = "STACKED_BAR"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"${local.metric_types[id]}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = {
                      alignmentPeriod    = "60s"
                      perSeriesAligner   = "ALIGN_DELTA"
                      crossSeriesReducer = "REDUCE_SUM"
                      groupByFields      = [local.dashboard_charts[id][1]]
                    }
                  }
                }
              }]
            }
          }
        }
      ]
    }
  })
}
