terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      # Lower bounds: the provider schemas tools/terraform_schema_check.py checks every .tf
      # against (google 6.50.0, archive 2.7.1, time 0.13.1); nothing newer is used.
      version = ">= 6.50, < 8"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.7, < 3"
    }
    time = {
      source  = "hashicorp/time"
      version = ">= 0.13, < 1"
    }
  }
}
