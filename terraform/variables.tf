variable "project_id" {
  description = "Project that hosts the function, its triggers, Scheduler jobs and (by default) the Firestore ledger."
  type        = string

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Region of the function, its Eventarc triggers and Scheduler jobs; default region for short job names."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must look like europe-west1."
  }
}

variable "name" {
  description = "Name of the function; prefix of every resource name and service account id."
  type        = string
  default     = "triggers"

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{2,18}[a-z0-9]$", var.name))
    error_message = "name must be 4-20 lowercase letters, digits or hyphens, starting with a letter (it prefixes 30-character service account ids)."
  }
}

variable "rules_file" {
  description = "Path of the rules YAML file. It is read here (yamldecode) and packaged with the function as rules.yaml, so deployed behaviour and resources come from the same file."
  type        = string

  validation {
    condition     = can(regex("\\.ya?ml$", var.rules_file))
    error_message = "rules_file must be one .yaml or .yml file (a rules directory is not supported by the module)."
  }
}

variable "source_dir" {
  description = "Directory that contains the `triggers` package (the repository root). Its triggers/**/*.py files are packaged."
  type        = string
}

variable "requirements" {
  description = "Lines of the function's requirements.txt. Default: the [project] dependencies of pyproject.toml (a unit test keeps them in sync)."
  type        = list(string)
  default = [
    "functions-framework>=3.8,<4",
    "cloudevents>=1.11,<2",
    "pydantic>=2.7,<3",
    "ruamel.yaml>=0.18,<0.20",
    "ruamel.yaml.clib>=0.2.12; platform_python_implementation == 'CPython'",
    "jinja2>=3.1.4,<4",
    "cel-expr-python>=0.1.3,<0.2",
    "google-cloud-run>=0.10,<1",
    "alibabacloud-sae20190506>=2.11,<3",
    "google-cloud-firestore>=2.16,<3",
    "google-cloud-pubsub>=2.44,<3",
    "cronsim>=2.8,<3",
    "requests>=2.32,<3",
    "google-auth[requests]>=2.29,<3",
    "google-cloud-tasks>=2.16,<3",
  ]
}

variable "function" {
  description = "The Cloud Functions (gen2) function: runtime, sizing, ingress and extra environment."
  type = object({
    runtime               = optional(string, "python312")
    available_memory      = optional(string, "512Mi")
    available_cpu         = optional(string, "1")
    timeout_seconds       = optional(number, 540)
    min_instance_count    = optional(number, 0)
    max_instance_count    = optional(number, 10)
    concurrency           = optional(number, 1)
    ingress_settings      = optional(string, "ALLOW_ALL")
    build_service_account = optional(string)
    verify_oidc           = optional(bool, false)
    environment           = optional(map(string), {})
  })
  default = {}

  validation {
    condition     = var.function.timeout_seconds >= 10 && var.function.timeout_seconds <= 540
    error_message = "function.timeout_seconds must be 10-540 (event-driven deliveries: Pub/Sub push and Eventarc stop at 600 s)."
  }
  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.function.ingress_settings)
    error_message = "function.ingress_settings must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
  validation {
    condition     = alltrue([for k in keys(var.function.environment) : !contains(["TRIGGERS_RULES", "TRIGGERS_LEDGER", "TRIGGERS_FIRESTORE_DATABASE", "TRIGGERS_FIRESTORE_COLLECTION", "TRIGGERS_FIRESTORE_PROJECT"], k)])
    error_message = "function.environment must not set the TRIGGERS_* settings the module owns (rules, ledger, Firestore)."
  }
}

variable "source_bucket" {
  description = "Existing bucket for the function's source archive. null: the module creates one."
  type        = string
  default     = null
}

variable "firestore" {
  description = "The Firestore ledger: create the database or use an existing one, the collection, TTL policy and index exemptions."
  type = object({
    create                 = optional(bool, true)
    project                = optional(string)
    database               = optional(string, "(default)")
    location_id            = optional(string)
    collection             = optional(string, "triggers-runs")
    ttl                    = optional(bool, true)
    exempt_indexes         = optional(bool, true)
    composite_indexes      = optional(bool, true)
    delete_protection      = optional(bool, true)
    point_in_time_recovery = optional(bool, true)
  })
  default = {}

  validation {
    condition     = !var.firestore.create || var.firestore.location_id != null
    error_message = "firestore.location_id is required when firestore.create is true (e.g. eur3, nam5, europe-west1)."
  }
  validation {
    condition     = can(regex("^[^/]+$", var.firestore.collection))
    error_message = "firestore.collection is a collection id, without '/'."
  }
}

variable "pubsub_delivery" {
  description = "How Pub/Sub rules' topics reach the function: \"eventarc\" (Eventarc triggers) or \"push\" (Terraform-owned push subscriptions, with the dead-letter policy)."
  type        = string
  default     = "push"

  validation {
    condition     = contains(["eventarc", "push"], var.pubsub_delivery)
    error_message = "pubsub_delivery must be \"eventarc\" or \"push\"."
  }
}

variable "dead_letter" {
  description = "Dead-letter topic (and a subscription that holds its messages): the function publishes every request it rejects for good (TRIGGERS_DEAD_LETTER_TOPIC), and push subscriptions forward messages that still fail after max_delivery_attempts."
  type = object({
    enabled                    = optional(bool, true)
    max_delivery_attempts      = optional(number, 10)
    message_retention_duration = optional(string, "604800s")
    minimum_backoff            = optional(string, "10s")
    maximum_backoff            = optional(string, "600s")
  })
  default = {}

  validation {
    condition     = var.dead_letter.max_delivery_attempts >= 5 && var.dead_letter.max_delivery_attempts <= 100
    error_message = "dead_letter.max_delivery_attempts must be 5-100 (Pub/Sub's limits)."
  }
}

variable "bucket_locations" {
  description = "Location of the Eventarc trigger for each watched bucket that is not in `region` (a trigger must be in its bucket's location: eu, us, asia or the bucket's region)."
  type        = map(string)
  default     = {}
}

variable "scheduler" {
  description = "Cloud Scheduler jobs for rules with a `schedule`: region, default time zone and retry config."
  type = object({
    region               = optional(string)
    default_time_zone    = optional(string, "Etc/UTC")
    attempt_deadline     = optional(string, "540s")
    retry_count          = optional(number, 3)
    max_retry_duration   = optional(string, "0s")
    min_backoff_duration = optional(string, "10s")
    max_backoff_duration = optional(string, "600s")
    max_doublings        = optional(number, 5)
  })
  default = {}

  validation {
    condition     = var.scheduler.retry_count >= 0 && var.scheduler.retry_count <= 5
    error_message = "scheduler.retry_count must be 0-5."
  }
}

variable "reconcile" {
  description = "The reconciler: a second function (entry point handle_reconcile, same source and settings) that a Cloud Scheduler job calls on `schedule` to move `launched` ledger records to succeeded / failed / cancelled."
  type = object({
    enabled              = optional(bool, true)
    schedule             = optional(string, "*/10 * * * *")
    time_zone            = optional(string, "Etc/UTC")
    paused               = optional(bool, false)
    attempt_deadline     = optional(string, "330s")
    retry_count          = optional(number, 1)
    max_retry_duration   = optional(string, "0s")
    min_backoff_duration = optional(string, "30s")
    max_backoff_duration = optional(string, "300s")
    max_doublings        = optional(number, 2)
    timeout_seconds      = optional(number, 300)
    available_memory     = optional(string, "512Mi")
    available_cpu        = optional(string, "1")
    max_instance_count   = optional(number, 1)
    job_role             = optional(string, "roles/run.viewer")
  })
  default = {}

  validation {
    condition     = can(regex("^\\S+(\\s+\\S+){4}$", trimspace(var.reconcile.schedule)))
    error_message = "reconcile.schedule must be a unix-cron expression with five fields, e.g. \"*/10 * * * *\"."
  }
  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_+/-]*$", var.reconcile.time_zone))
    error_message = "reconcile.time_zone must be a tz database name such as Etc/UTC or Europe/Berlin."
  }
  validation {
    condition     = var.reconcile.timeout_seconds >= 10 && var.reconcile.timeout_seconds <= 1800
    error_message = "reconcile.timeout_seconds must be 10-1800 (Cloud Scheduler waits at most 30 minutes for an HTTP target)."
  }
  validation {
    condition = (
      can(regex("^[0-9]+s$", var.reconcile.attempt_deadline))
      && try(tonumber(trimsuffix(var.reconcile.attempt_deadline, "s")) >= 15, false)
      && try(tonumber(trimsuffix(var.reconcile.attempt_deadline, "s")) <= 1800, false)
    )
    error_message = "reconcile.attempt_deadline must be \"<seconds>s\" between 15s and 1800s (Cloud Scheduler's limits for HTTP targets)."
  }
  validation {
    # A deadline shorter than the pass lets Scheduler give up (and retry) while a pass still runs.
    condition     = try(tonumber(trimsuffix(var.reconcile.attempt_deadline, "s")) >= var.reconcile.timeout_seconds, false)
    error_message = "reconcile.attempt_deadline must be at least reconcile.timeout_seconds."
  }
  validation {
    condition     = var.reconcile.retry_count >= 0 && var.reconcile.retry_count <= 5
    error_message = "reconcile.retry_count must be 0-5."
  }
  validation {
    condition     = alltrue([for d in [var.reconcile.max_retry_duration, var.reconcile.min_backoff_duration, var.reconcile.max_backoff_duration] : can(regex("^[0-9]+s$", d))])
    error_message = "reconcile.max_retry_duration, min_backoff_duration and max_backoff_duration are durations in seconds, e.g. \"30s\"."
  }
  validation {
    condition     = var.reconcile.max_doublings >= 0 && var.reconcile.max_instance_count >= 1
    error_message = "reconcile.max_doublings must be >= 0 and reconcile.max_instance_count >= 1."
  }
  validation {
    # Granted on each target job: a predefined or custom role, never a basic (primitive) one.
    condition = (
      can(regex("^(roles/[a-zA-Z0-9_.]+|(projects|organizations)/[^/]+/roles/[a-zA-Z0-9_.]+)$", var.reconcile.job_role))
      && !can(regex("^roles/(owner|editor|viewer)$", var.reconcile.job_role))
    )
    error_message = "reconcile.job_role must be a predefined (roles/...) or custom role with run.executions.get, not a basic role."
  }
}

variable "job_viewer_role" {
  description = "Role granted to the function on each target job so it can find executions by run key (run.executions.list, docs/runner.md). null: not granted (the runner cannot adopt an execution after an ambiguous failure)."
  type        = string
  default     = "roles/run.viewer"
}

variable "kms_key_name" {
  description = "Cloud KMS key for the dead-letter topic and the source bucket (the service agents need roles/cloudkms.cryptoKeyEncrypterDecrypter on it). null: Google-managed encryption."
  type        = string
  default     = null
}

variable "enable_apis" {
  description = "Enable the APIs the module uses (never disabled on destroy)."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels on every resource that takes them."
  type        = map(string)
  default     = {}
}

variable "monitoring" {
  description = "Cloud Monitoring over the functions' structured logs (monitoring.tf): log-based metrics per rule (matched, launched, duplicate, rejected, retried, dead_lettered, executions, reconcile_errors), alert policies that notify `notification_channels`, and a dashboard. Computed by Cloud Logging, so the function's cold start is unchanged."
  type = object({
    enabled                       = optional(bool, true)
    metric_prefix                 = optional(string) # default: var.name (metrics are logging.googleapis.com/user/PREFIX/ID)
    alerts                        = optional(bool, true)
    dashboard                     = optional(bool, true)
    notification_channels         = optional(list(string), [])
    alert_window                  = optional(string, "300s")
    rejected_threshold            = optional(number, 0)
    retried_threshold             = optional(number, 10)
    failed_executions_threshold   = optional(number, 0)
    dead_letter_backlog_threshold = optional(number, 0)
    dead_letter_backlog_duration  = optional(string, "3600s")
  })
  default = {}

  validation {
    condition     = can(regex("^[0-9]+s$", var.monitoring.alert_window)) && can(regex("^[0-9]+s$", var.monitoring.dead_letter_backlog_duration))
    error_message = "monitoring.alert_window and monitoring.dead_letter_backlog_duration are durations in seconds, e.g. \"300s\"."
  }
  validation {
    condition     = alltrue([for channel in var.monitoring.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", channel))])
    error_message = "monitoring.notification_channels are notification channel names: projects/PROJECT/notificationChannels/ID."
  }
}
